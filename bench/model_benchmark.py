"""Benchmark: the detector's model alone, in onnxruntime, against the machine's fp32 peak.

Measured in one run, on preprocessed batches already in memory:

* **fp32 by batch size** (``--batch-sizes``): images/s and p50/p99 latency of one ``session.run``,
  for five CPU session set-ups: as ``detector.Detector`` makes it (``ORT_ENABLE_ALL``, one intra-op
  thread per core, idle threads not spinning), the same with spinning, the graph optimised once and
  saved (loaded back with optimisation off), the graph with its "SAME" padding folded to
  constants (``mimicry.training.quantize.fold_static_padding``), and that graph in one single-threaded
  session per core, each scoring its own batch at the same time;
* **FLOPs** of the model, counted from the ONNX graph (Conv, Gemm, MatMul; shapes from
  ``onnx.shape_inference``), and the CPU's fp32 peak: cores x clock x FLOP per cycle (FMA units x
  SIMD lanes x 2), from ``/proc/cpuinfo``; the fraction of the peak each set-up reaches;
* **where the time goes** (``--profile``): onnxruntime's profiler, time per operator type and per
  kind of convolution (depthwise, pointwise, full), with the FLOP/s each kind reaches;
* **variants** (``--variants DIR``, made by ``python -m mimicry.training.quantize``): each loaded by
  ``Detector.from_dir``, its images/s, and its accuracy against the fp32 model on real images
  (``--manifest``, ``--split test``): AUROC of both, labels that agree at the card's threshold,
  largest logit difference;
* **GPU** (``--gpu``, where onnxruntime has the CUDA execution provider): fp32 and the ``fp16``
  variant with IOBinding (input already on the device) and with a host copy per batch.

The machine's load average is recorded before and after each part: on a shared machine compare
figures within one run only.

``python bench/model_benchmark.py --model models/default --variants runs/quant --profile``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimicry.detector import Detector  # noqa: E402
from mimicry.detector.bundle import ModelBundle  # noqa: E402

CPU = ["CPUExecutionProvider"]


# ----------------------------------------------------------------------------- the machine


def cpu_info() -> dict:
    """Model name, cores, clock and SIMD features from /proc/cpuinfo and sysfs, and the fp32 peak.

    FLOP per cycle per core = FMA units x fp32 lanes x 2 (multiply and add): 2 x 16 x 2 = 64 with
    AVX-512, 2 x 8 x 2 = 32 with AVX2+FMA (two FMA units is what current server cores have; a
    part with one AVX-512 unit peaks at half). The clock is the one the kernel reports
    (``cpu MHz``; under a hypervisor that is the nominal clock, not a turbo clock); the maximum
    from cpufreq is used instead where sysfs has it.
    """
    text = Path("/proc/cpuinfo").read_text()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            fields.setdefault(k, v)
    flags = set(fields.get("flags", "").split())
    cores = os.cpu_count() or 1
    mhz, clock_source = float(fields.get("cpu MHz", "nan")), "/proc/cpuinfo 'cpu MHz'"
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        mhz, clock_source = int(max_freq.read_text()) / 1000, str(max_freq)
    if "avx512f" in flags:
        isa, lanes = "AVX-512 (2 FMA units assumed)", 16
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "AVX2 + FMA (2 FMA units assumed)", 8
    else:
        isa, lanes = "SSE (no FMA)", 2  # 4 lanes, separate mul and add: ~2 x 4 = 8 FLOP/cycle
    flop_per_cycle = 2 * lanes * 2
    return {
        "model": fields.get("model name", platform.processor()),
        "cores": cores,
        "clock_ghz": round(mhz / 1000, 3),
        "clock_source": clock_source,
        "isa": isa,
        "int8_features": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16"}),
        "fp32_flop_per_cycle_per_core": flop_per_cycle,
        "fp32_peak_gflops": round(cores * mhz / 1000 * flop_per_cycle, 1),
    }


def sgemm_ceiling(n: int = 2048, reps: int = 5) -> dict:
    """What a tuned fp32 kernel reaches on this machine: numpy's BLAS (OpenBLAS) multiplying two
    ``n`` x ``n`` float32 matrices with every core, best of ``reps``, per wall second and per CPU
    second of this process. An empirical peak: the nominal one rests on a clock that a hypervisor
    may not report (turbo), and it shows how much of the nominal peak real kernels reach."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    wall = cpu = 0.0
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        wall = max(wall, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
        cpu = max(cpu, 2 * n**3 / max(time.process_time() - c0, 1e-9) / 1e9)
    return {"n": n, "gflops_wall": round(wall, 1), "gflop_per_cpu_second": round(cpu, 1)}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------------- FLOPs


def conv_kind(weight_shape: list[int], group: int) -> str:
    """``depthwise`` (one filter per channel), ``pointwise`` (1x1) or ``full`` (k x k, dense)."""
    cout, cin_per_group, kh, kw = weight_shape
    if group > 1 and cin_per_group == 1:
        return "depthwise"
    if kh == kw == 1:
        return "pointwise"
    return "full"


def count_flops(model, input_size: int) -> dict[str, dict]:
    """FLOPs of one image through the graph, per node: ``{node name: {"op", "kind", "flops"}}``.

    Multiply-adds count as 2 FLOPs; bias additions, activations and pooling are not counted (under
    1% here). Shapes come from ONNX shape inference with the batch fixed to 1; a graph whose pads
    are computed at run time must go through ``fold_static_padding`` first.
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        d = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [x.dim_value if x.HasField("dim_value") else -1 for x in d]
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                shapes[node.output[0]] = list(numpy_helper.to_array(value).shape)
    out: dict[str, dict] = {}
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if not w or not y or min(y) < 1:
                raise ValueError(f"shape of {node.name} unknown after shape inference")
            group = int(attrs.get("group", 1))
            macs = int(np.prod(y)) * int(np.prod(w[1:]))  # each output: Cin/group x kh x kw MACs
            out[node.name] = {"op": "Conv", "kind": conv_kind(w, group), "flops": 2 * macs}
        elif node.op_type in ("Gemm", "MatMul"):
            a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not a or not y or min(a) < 1 or min(y) < 1:
                raise ValueError(f"shape of {node.name} unknown after shape inference")
            k = a[-2] if node.op_type == "Gemm" and attrs.get("transA", 0) else a[-1]
            out[node.name] = {"op": node.op_type, "kind": "dense", "flops": 2 * int(np.prod(y)) * k}
    return out


def flops_by_kind(per_node: dict[str, dict]) -> dict[str, int]:
    """Total FLOPs per kind of node (``depthwise``, ``pointwise``, ``full``, ``dense``)."""
    totals: Counter = Counter()
    for v in per_node.values():
        totals[v["kind"]] += v["flops"]
    return dict(totals)


# ----------------------------------------------------------------------------- sessions


def session_options(*, threads: int, spinning: bool, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                    save_to: Path | None = None, profile_prefix: str | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def time_session(run, x: np.ndarray, min_seconds: float, min_calls: int = 5, copies: int = 1) -> dict:
    """Call ``run(x)`` (after two warm-up calls) until ``min_seconds`` and ``min_calls`` are both
    reached; images/s over all calls (each call scoring ``copies`` x ``len(x)`` images) and per-call
    latency percentiles in ms."""
    run(x)
    run(x)
    lat = []
    c_start, t_start = time.process_time(), time.perf_counter()
    while len(lat) < min_calls or time.perf_counter() - t_start < min_seconds:
        t0 = time.perf_counter()
        run(x)
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    ms = np.asarray(lat) * 1000
    return {"batch": len(x), "calls": len(lat), "img_s": round(len(lat) * len(x) * copies / total, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            # CPU time of this process per image, all threads: less sensitive than images/s to
            # other processes on a shared machine (spinning threads inflate it).
            "cpu_ms_per_img": round(cpu / (len(lat) * len(x) * copies) * 1000, 2)}


def ort_runner(session: ort.InferenceSession):
    name = session.get_inputs()[0].name
    out = session.get_outputs()[0].name
    return lambda x: session.run([out], {name: x})


def batch_of(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


def bench_cpu_setups(onnx_path: Path, folded_path: Path, size: int, batch_sizes: list[int], threads: int,
                     min_seconds: float, scratch: Path) -> dict:
    """fp32 throughput and latency per session set-up and batch size."""
    optimised = scratch / "optimised.onnx"
    # Optimise once and save (onnxruntime warns that the saved NCHWc graph suits this CPU only).
    ort.InferenceSession(str(onnx_path), session_options(threads=threads, spinning=False, save_to=optimised),
                         providers=CPU)
    setups = {
        "detector (ORT_ENABLE_ALL, no spinning)": (onnx_path, dict(spinning=False)),
        "spinning on": (onnx_path, dict(spinning=True)),
        "optimised offline, loaded without optimisation": (
            optimised, dict(spinning=False, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)),
        "SAME padding folded to constants (no spinning)": (folded_path, dict(spinning=False)),
    }
    results: dict[str, list[dict]] = {}
    if threads > 1:
        # One single-threaded session per core, each scoring its own batch at the same time: no
        # synchronisation between cores inside a convolution, at the price of latency.
        label = f"{threads} sessions x 1 thread, concurrent (SAME padding folded)"
        sessions = [ort.InferenceSession(str(folded_path), session_options(threads=1, spinning=False),
                                         providers=CPU) for _ in range(threads)]
        runners = [ort_runner(s) for s in sessions]
        results[label] = []
        with ThreadPoolExecutor(threads) as pool:
            def run_all(x: np.ndarray) -> None:
                list(pool.map(lambda r: r(x), runners))

            for b in batch_sizes:
                r = time_session(run_all, batch_of(b, size), min_seconds, copies=threads)
                r["load_avg"] = load_avg()
                results[label].append(r)
                print(f"  {label:50s} batch {b:3d}: {r['img_s']:7.1f} img/s  p50 {r['p50_ms']:8.2f} ms  "
                      f"(load {r['load_avg']})", file=sys.stderr)
    for label, (path, kw) in setups.items():
        session = ort.InferenceSession(str(path), session_options(threads=threads, **kw), providers=CPU)
        run = ort_runner(session)
        results[label] = []
        for b in batch_sizes:
            r = time_session(run, batch_of(b, size), min_seconds)
            r["load_avg"] = load_avg()
            results[label].append(r)
            print(f"  {label:50s} batch {b:3d}: {r['img_s']:7.1f} img/s  p50 {r['p50_ms']:8.2f} ms  "
                  f"p99 {r['p99_ms']:8.2f} ms  (load {r['load_avg']})", file=sys.stderr)
    return results


# ----------------------------------------------------------------------------- profile


def profile(path: Path, model_flops: dict[str, int], size: int, batch: int, threads: int, calls: int,
            scratch: Path) -> dict:
    """onnxruntime's per-node kernel times over ``calls`` runs: share of time per operator type and,
    for convolutions, per kind, with the GFLOP/s each kind reaches while it runs: the model's FLOPs
    (``model_flops``, per kind per image, from :func:`count_flops`) and the FLOPs onnxruntime
    executes (from the shapes its profiler records, where the NCHWc layout pads channels to its
    block size, for example 24 to 32 with AVX-512)."""
    opts = session_options(threads=threads, spinning=False, profile_prefix=str(scratch / "ort_profile"))
    session = ort.InferenceSession(str(path), opts, providers=CPU)
    run = ort_runner(session)
    x = batch_of(batch, size)
    for _ in range(calls):
        run(x)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: Counter = Counter()
    kind_us: Counter = Counter()
    kind_flops: Counter = Counter()
    kind_nodes: Counter = Counter()
    runs_us = []
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_us.append(e["dur"])
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        args = e["args"]
        by_op[args["op_name"]] += e["dur"]
        if args["op_name"] in ("Conv", "FusedConv"):
            inputs = [next(iter(t.values())) for t in args["input_type_shape"]]
            y = next(iter(args["output_type_shape"][0].values()))
            w = inputs[1]
            kind = conv_kind(w, group=inputs[0][1] // w[1])
            kind_us[kind] += e["dur"]
            kind_flops[kind] += 2 * int(np.prod(y)) * int(np.prod(w[1:]))
            kind_nodes[kind] += 1
    kernel_total = sum(by_op.values())
    kinds = {kind: {"nodes_per_run": kind_nodes[kind] // calls,
                    "time_share": round(us / kernel_total, 3),
                    "model_gflop_per_image": round(model_flops.get(kind, 0) / 1e9, 4),
                    "executed_gflop_per_image": round(kind_flops[kind] / (calls * batch) / 1e9, 4),
                    "model_gflops_while_running": round(model_flops.get(kind, 0) * calls * batch / us / 1e3, 1),
                    "executed_gflops_while_running": round(kind_flops[kind] / us / 1e3, 1)}
             for kind, us in kind_us.most_common()}
    return {
        "batch": batch,
        "calls": calls,
        "op_time_share": {op: round(us / kernel_total, 3) for op, us in by_op.most_common() if us / kernel_total >= 0.001},
        "conv_kinds": kinds,
        "kernel_time_over_run_time": round(kernel_total / max(1, sum(runs_us)), 3),
    }


# ----------------------------------------------------------------------------- variants


def test_split_inputs(manifest: Path, split: str, bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images of ``split`` (as ``Detector.load_input`` makes them) and their 0/1 labels."""
    from mimicry.training.quantize import load_inputs

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split]
    if not rows:
        raise SystemExit(f"{manifest} has no rows in split {split!r}")
    paths = [manifest.parent / r["path"] for r in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(paths)} images of split {split!r} are missing "
                         f"(first: {missing[0]}); rebuild the dataset (make dataset) or pass --manifest")
    y = np.asarray([r["label"] == "ai-mimicry" for r in rows], np.int64)
    return load_inputs(paths, bundle), y


def accuracy(ref: Detector, det: Detector, x: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    def labels(d: Detector, logits: np.ndarray) -> list[str | None]:
        return [d.bundle.thresholds.label(float(s)) for s in d.bundle.calibration(logits)]

    a = np.concatenate([ref.predict_arrays(x[i:i + 32]) for i in range(0, len(x), 32)])
    b = np.concatenate([det.predict_arrays(x[i:i + 32]) for i in range(0, len(x), 32)])
    la, lb = labels(ref, a), labels(det, b)
    threshold = ref.bundle.thresholds.ai_mimicry
    fa, fb = ref.bundle.calibration(a) >= threshold, det.bundle.calibration(b) >= threshold
    return {
        "n": int(len(y)),
        "auroc_fp32": round(float(roc_auc_score(y, a)), 4),
        "auroc": round(float(roc_auc_score(y, b)), 4),
        # Flagged or not at the card's ai_mimicry threshold, then the three bands
        # (human / uncertain / ai-mimicry).
        "flag_agreement": round(float(np.mean(fa == fb)), 4),
        "flags_differing": int(np.sum(fa != fb)),
        "label_agreement": round(float(np.mean([p == q for p, q in zip(la, lb)])), 4),
        "labels_differing": int(sum(p != q for p, q in zip(la, lb))),
        "label_changes": dict(Counter(f"{p}->{q}" for p, q in zip(la, lb) if p != q)),
        "max_abs_logit_diff": round(float(np.max(np.abs(a - b))), 4),
        "max_abs_score_diff": round(float(np.max(np.abs(ref.bundle.calibration(a) - det.bundle.calibration(b)))), 4),
    }


def bench_variants(ref_dir: Path, variants_dir: Path, batch_sizes: list[int], threads: int, min_seconds: float,
                   eval_x: np.ndarray | None, eval_y: np.ndarray | None) -> dict:
    ref = Detector.from_dir(ref_dir, providers=CPU, intra_op_threads=threads)
    size = ref.config.size
    dirs = [("fp32 (the model as given)", ref_dir)]
    dirs += [(d.name, d) for d in sorted(variants_dir.iterdir()) if (d / "model.json").is_file()]
    out = {}
    for name, d in dirs:
        det = Detector.from_dir(d, providers=CPU, intra_op_threads=threads)
        source = det.bundle.card.get("quantization", {}).get("source_onnx_sha256", ref.bundle.card["onnx_sha256"])
        if source != ref.bundle.card["onnx_sha256"]:
            print(f"  skip {d}: made from another model (source sha256 {source[:12]}...)", file=sys.stderr)
            continue
        speed = []
        for b in batch_sizes:
            r = time_session(det.predict_arrays, batch_of(b, size), min_seconds)
            r["load_avg"] = load_avg()
            speed.append(r)
        entry: dict = {"dir": str(d), "speed": speed}
        if eval_x is not None:
            entry["accuracy"] = accuracy(ref, det, eval_x, eval_y)
        out[name] = entry
        acc = entry.get("accuracy", {})
        print(f"  {name:28s} " + "  ".join(f"b{r['batch']}: {r['img_s']:6.1f} img/s" for r in speed)
              + (f"  AUROC {acc['auroc']} (fp32 {acc['auroc_fp32']}), flags agree {acc['flag_agreement']}, "
                 f"labels agree {acc['label_agreement']} {acc['label_changes']}, "
                 f"max |dlogit| {acc['max_abs_logit_diff']}" if acc else ""), file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- GPU


def bench_gpu(models: dict[str, Path], size: int, batch_sizes: list[int], min_seconds: float) -> dict:
    """CUDA execution provider: per model and batch size, images/s with the input already on the
    GPU (IOBinding; output kept on the GPU until the end) and with a host-to-device copy per call."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"not_run": "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu "
                           "of the same version on a machine with a CUDA GPU)"}
    providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    out: dict = {"device": ort.get_device()}
    for label, path in models.items():
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), opts, providers=providers)
        if session.get_providers()[0] != "CUDAExecutionProvider":
            out[label] = {"not_run": f"session fell back to {session.get_providers()}"}
            continue
        name, out_name = session.get_inputs()[0].name, session.get_outputs()[0].name
        rows = []
        for b in batch_sizes:
            x = batch_of(b, size)
            on_device = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding = session.io_binding()
            binding.bind_ortvalue_input(name, on_device)
            binding.bind_output(out_name, "cuda", 0)

            def run_bound(_x, binding=binding):
                session.run_with_iobinding(binding)  # synchronous: returns when the GPU is done

            bound = time_session(run_bound, x, min_seconds)
            check = binding.copy_outputs_to_cpu()[0]
            host = time_session(ort_runner(session), x, min_seconds)
            rows.append({"batch": b, "iobinding_img_s": bound["img_s"], "iobinding_p50_ms": bound["p50_ms"],
                         "iobinding_p99_ms": bound["p99_ms"], "host_copy_img_s": host["img_s"],
                         "host_copy_p50_ms": host["p50_ms"], "output_finite": bool(np.isfinite(check).all())})
            print(f"  GPU {label:10s} batch {b:4d}: IOBinding {bound['img_s']:8.1f} img/s, "
                  f"with host copy {host['img_s']:8.1f} img/s", file=sys.stderr)
        out[label] = rows
    return out


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/default"), help="the fp32 model directory")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (default: cores)")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per measurement")
    p.add_argument("--profile", action="store_true", help="per-operator time from onnxruntime's profiler")
    p.add_argument("--profile-batch", type=int, default=16)
    p.add_argument("--variants", type=Path, default=None, help="directory of variants from mimicry.training.quantize")
    p.add_argument("--variant-batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--manifest", type=Path, default=Path("data/demo/manifest.jsonl"),
                   help="real images for the accuracy of variants (paths relative to its directory)")
    p.add_argument("--split", default="test")
    p.add_argument("--no-accuracy", action="store_true", help="time variants without scoring real images")
    p.add_argument("--gpu", action="store_true", help="also the CUDA execution provider (fp32, and the fp16 variant)")
    p.add_argument("--gpu-batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)
    if min(args.batch_sizes + args.variant_batch_sizes + args.gpu_batch_sizes) < 1:
        p.error("batch sizes must be >= 1")
    return args


def main(args: argparse.Namespace) -> dict:
    import onnx

    from mimicry.training.quantize import fold_static_padding

    bundle = ModelBundle.from_dir(args.model)
    size = bundle.preprocess.size
    cpu = cpu_info()
    result: dict = {
        "machine": cpu,
        "onnxruntime": ort.__version__,
        "model": f"{bundle.name} {bundle.version} ({bundle.card['backbone']}, {size} px, "
                 f"sha256 {bundle.card['onnx_sha256'][:12]})",
        "threads": args.threads,
        "load_avg_start": load_avg(),
    }
    with tempfile.TemporaryDirectory(prefix="model-bench-") as tmp:
        scratch = Path(tmp)
        folded = fold_static_padding(onnx.load(str(bundle.onnx_path)), size)
        folded_path = scratch / "folded.onnx"
        onnx.save(folded, str(folded_path))
        per_node = count_flops(folded, size)
        total = sum(v["flops"] for v in per_node.values())
        result["flops"] = {"gflop_per_image": round(total / 1e9, 4),
                           "by_kind_gflop": {k: round(v / 1e9, 4) for k, v in flops_by_kind(per_node).items()}}
        print(f"model: {total / 1e9:.3f} GFLOP per image; CPU peak {cpu['fp32_peak_gflops']} GFLOP/s "
              f"({cpu['cores']} cores x {cpu['clock_ghz']} GHz x {cpu['fp32_flop_per_cycle_per_core']})",
              file=sys.stderr)

        print("fp32, CPU:", file=sys.stderr)
        setups = bench_cpu_setups(bundle.onnx_path, folded_path, size, args.batch_sizes, args.threads,
                                  args.seconds, scratch)
        result["fp32_cpu"] = setups
        peak = cpu["fp32_peak_gflops"]
        sgemm = result["sgemm"] = sgemm_ceiling()
        result["implied_clock_ghz_from_sgemm"] = round(
            sgemm["gflop_per_cpu_second"] / cpu["fp32_flop_per_cycle_per_core"], 2)
        print(f"sgemm: {sgemm}", file=sys.stderr)
        result["fraction_of_peak"] = {}
        for label, rows in setups.items():
            best = max(rows, key=lambda r: r["img_s"])
            leanest = min(rows, key=lambda r: r["cpu_ms_per_img"])
            gflops = best["img_s"] * total / 1e9
            per_cpu_s = total / 1e9 / (leanest["cpu_ms_per_img"] / 1000)
            result["fraction_of_peak"][label] = {
                "best_img_s": best["img_s"], "batch": best["batch"], "gflops": round(gflops, 1),
                "of_nominal_peak": round(gflops / peak, 3),
                "of_sgemm_wall": round(gflops / sgemm["gflops_wall"], 3),
                # Per CPU second, model and sgemm alike: robust to other processes taking cores.
                "gflop_per_cpu_second": round(per_cpu_s, 1), "cpu_basis_batch": leanest["batch"],
                "of_sgemm_per_cpu_second": round(per_cpu_s / sgemm["gflop_per_cpu_second"], 3),
            }
        if args.profile:
            result["profile"] = {
                label: profile(path, flops_by_kind(per_node), size, args.profile_batch, args.threads, 10, scratch)
                for label, path in (("as given", bundle.onnx_path), ("SAME padding folded", folded_path))
            }
            for label, prof in result["profile"].items():
                print(f"profile ({label}): {json.dumps(prof['op_time_share'])}\n  {json.dumps(prof['conv_kinds'])}",
                      file=sys.stderr)
        if args.variants:
            eval_x = eval_y = None
            if not args.no_accuracy:
                eval_x, eval_y = test_split_inputs(args.manifest, args.split, bundle)
            print("variants:", file=sys.stderr)
            result["variants"] = bench_variants(args.model, args.variants, args.variant_batch_sizes, args.threads,
                                                args.seconds, eval_x, eval_y)
            if eval_y is not None:
                result["accuracy_set"] = f"{args.manifest} split {args.split!r}: {len(eval_y)} images"
        if args.gpu:
            models = {"fp32": folded_path}
            if args.variants and (args.variants / "fp16" / "model.onnx").is_file():
                models["fp16"] = args.variants / "fp16" / "model.onnx"
            result["gpu"] = bench_gpu(models, size, args.gpu_batch_sizes, args.seconds)
    result["load_avg_end"] = load_avg()
    return result


if __name__ == "__main__":
    arguments = parse_args()
    figures = main(arguments)
    print(json.dumps(figures, indent=2))
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2))
