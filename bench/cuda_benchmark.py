"""Benchmark: the engine on a CUDA GPU against the same engine on the same machine's CPUs.

Run where onnxruntime has the CUDA execution provider (``onnxruntime-gpu``). For each model folder:

* **agreement**: every image of ``--images`` (a folder of real pictures) and ``--n`` drawn 1-MP JPEGs
  (``scan_benchmark.make_jpegs``) scored by ``Detector`` twice, once as it opens by default (CUDA first)
  and once on the CPU alone: the largest difference of raw logit and of calibrated score, and the
  images whose band (human / uncertain / ai-mimicry) differs;
* **model only**: ``Detector.predict_arrays`` on preprocessed batches in host memory (what the engine
  does for every batch: a host-to-device copy in, scores back), images/s per batch size, CUDA
  against the CPU with one intra-op thread per core;
* **end to end**: ``Detector.stream`` (what ``mimicry scan`` runs) over the drawn JPEGs, CUDA against
  the CPU, per batch size and number of decode threads (``--workers``, default the cores).

Each figure is one timed pass after a warm-up pass; compare figures within one run only.

``python bench/cuda_benchmark.py --model models/default --images DIR --n 1000 --json out.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scan_benchmark import bench_ours, make_jpegs  # noqa: E402

from mimicry.detector import Detector  # noqa: E402

CPU = ["CPUExecutionProvider"]


def agreement(gpu: Detector, cpu: Detector, paths: list[Path]) -> dict:
    """Raw logits and calibrated scores of the same files on both providers."""
    a = gpu.predict([str(p) for p in paths])
    b = cpu.predict([str(p) for p in paths])
    scored = [(x, y) for x, y in zip(a, b) if x.score is not None and y.score is not None]
    if not scored:
        return {"files": len(paths), "scored": 0}
    dlogit = [abs(x.evidence["logit"] - y.evidence["logit"]) for x, y in scored]
    dscore = [abs(x.score - y.score) for x, y in scored]
    changed = [{"file": Path(x.source).name, "cuda": x.label, "cpu": y.label,
                "cuda_score": round(x.score, 4), "cpu_score": round(y.score, 4)}
               for x, y in scored if x.label != y.label]
    return {"files": len(paths), "scored": len(scored),
            "max_abs_logit_diff": round(max(dlogit), 4), "median_abs_logit_diff": round(float(np.median(dlogit)), 4),
            "max_abs_score_diff": round(max(dscore), 4), "labels_changed": changed,
            "flagged_cuda": sum(x.label == "ai-mimicry" for x, _ in scored),
            "flagged_cpu": sum(y.label == "ai-mimicry" for _, y in scored)}


def model_only(det: Detector, batch: int, seconds: float) -> float:
    size = det.config.size
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    det.predict_arrays(x)  # warm-up: kernels chosen, memory arena grown
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        det.predict_arrays(x)
        n += batch
    return n / (time.perf_counter() - t0)


def end_to_end(det: Detector, paths: list[Path], batch: int, workers: int) -> float:
    bench_ours(det, paths[:batch * 2], batch, workers)  # warm-up: kernels chosen, thread pool started
    return bench_ours(det, paths, batch, workers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, nargs="+", default=[Path("models/default")])
    p.add_argument("--images", type=Path, default=None, help="a folder of real pictures for the agreement")
    p.add_argument("--n", type=int, default=1000, help="drawn 1-MP JPEGs")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--scan-batch-sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model-only figure")
    p.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1],
                   help="decode threads of the end-to-end figures; several: one figure each (how decoding scales)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print("this onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu on a machine with a "
              "CUDA GPU", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="mimicry-cuda-bench-") as tmp:
        result = run(args, make_jpegs(Path(tmp) / "jpeg", args.n))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run(args: argparse.Namespace, drawn: list[Path]) -> dict:
    real = sorted(q for q in args.images.iterdir() if q.is_file()) if args.images else []
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                    "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
                    "files": f"{args.n} drawn JPEGs 1024x1024 q90; {len(real)} real pictures", "models": {}}
    for model in args.model:
        gpu = Detector.from_dir(model)
        cpu = Detector.from_dir(model, providers=CPU)
        card = gpu.bundle.card
        graph = (card.get("quantization") or {}).get("kind", "float32")
        out: dict = {"model": f"{card['name']} {card['version']} ({card['backbone']}, {card['input']['size']} px, {graph})",
                     "session_providers": gpu.session.get_providers()}
        print(out["model"], out["session_providers"], file=sys.stderr)
        out["agreement_real"] = agreement(gpu, cpu, real) if real else None
        out["agreement_drawn"] = agreement(gpu, cpu, drawn[:200])
        print("  agreement", out["agreement_real"], out["agreement_drawn"], file=sys.stderr)
        out["model_only_img_s"] = {}
        for b in args.batch_sizes:
            g, c = model_only(gpu, b, args.seconds), model_only(cpu, b, args.seconds)
            out["model_only_img_s"][str(b)] = {"cuda": round(g, 1), "cpu": round(c, 1), "ratio": round(g / c, 2)}
            print(f"  model only, batch {b}: CUDA {g:.1f} img/s, CPU {c:.1f} img/s", file=sys.stderr)
        out["end_to_end_img_s"] = {}
        for w in args.workers:
            for b in args.scan_batch_sizes:
                g, c = end_to_end(gpu, drawn, b, w), end_to_end(cpu, drawn, b, w)
                key = str(b) if len(args.workers) == 1 else f"batch {b}, {w} decode threads"
                out["end_to_end_img_s"][key] = {"cuda": round(g, 1), "cpu": round(c, 1), "ratio": round(g / c, 2)}
                print(f"  end to end, batch {b}, {w} threads: CUDA {g:.1f} img/s, CPU {c:.1f} img/s", file=sys.stderr)
        result["models"][str(model)] = out
    return result


if __name__ == "__main__":
    sys.exit(main())
