"""Make int8 and fp16 variants of a detector's ONNX model, each a loadable model directory.

Variants (``--variants``, default all):

* ``fp32-static-pad``: the float32 graph with its "SAME" padding folded to constants
  (:func:`fold_static_padding`); every int8 variant starts from this graph too;
* ``int8-qdq``, ``int8-qdq-pc``, ``int8-qdq-pc-rr``: static quantisation in QDQ format
  (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into int8 kernels), per tensor or
  per output channel (``-pc``), with 7-bit weights (``-rr``, ``reduce_range``: avoids the
  saturation of 16-bit intermediate sums on x86 CPUs without VNNI);
* ``int8-qop-pc``, ``int8-qop-pc-rr``: the same in QOperator format (QLinearConv nodes);
* ``int8-dynamic``: weights int8, activations quantised at run time from each batch's range;
* ``fp16``: weights and activations in float16 with float32 input and output (for GPUs; on a CPU
  onnxruntime runs most of it through casts back to float32).

Static variants are calibrated (min/max by default) on real images of a split of the dataset
(``--split val``, never test), decoded and preprocessed by ``detector`` exactly as inference does.
Each variant is written to ``OUT/<variant>/`` with ``model.onnx`` and a ``model.json`` copied from
the source model's card, its ``onnx_sha256`` recomputed and a ``quantization`` section saying how
it was made; ``detector.Detector.from_dir`` loads it like any model. Thresholds and calibration are
the source model's; the card's ``metrics`` are the source model's too (``bench/model_benchmark.py``
measures each variant's own accuracy on the test split).

``python -m mimicry.training.quantize --model models/default --manifest data/demo/manifest.jsonl --out runs/quant``
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mimicry.detector.bundle import ONNX_FILE, ModelBundle, write_model_json
from mimicry.detector.decode import decode_image
from mimicry.detector.preprocess import preprocess

STATIC_VARIANTS = {
    # name: (format, per_channel, reduce_range)
    "int8-qdq": ("QDQ", False, False),
    "int8-qdq-pc": ("QDQ", True, False),
    "int8-qdq-pc-rr": ("QDQ", True, True),
    "int8-qop-pc": ("QOperator", True, False),
    "int8-qop-pc-rr": ("QOperator", True, True),
}
VARIANTS = ("fp32-static-pad", *STATIC_VARIANTS, "int8-dynamic", "fp16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model directory (model.onnx + model.json)")
    p.add_argument("--manifest", type=Path, default=Path("data/demo/manifest.jsonl"),
                   help="dataset manifest; image paths are relative to its directory")
    p.add_argument("--split", default="val", help="split whose images calibrate static variants (never test)")
    p.add_argument("--calibration-images", type=int, default=80, help="at most this many images of --split")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="calibration method for static variants")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--out", type=Path, default=Path("runs/quant"), help="one sub-directory per variant")
    args = p.parse_args(argv)
    if args.split == "test":
        p.error("--split test: calibrating on the test split would leak it into the accuracy figures")
    if args.calibration_images < 1:
        p.error("--calibration-images must be >= 1")
    return args


def manifest_paths(manifest: Path, split: str, limit: int | None = None) -> list[Path]:
    """Image paths of one split, in manifest order, alternating labels so a short prefix has both."""
    by_label: dict[str, list[Path]] = {}
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row["split"] == split:
                    by_label.setdefault(row["label"], []).append(manifest.parent / row["path"])
    if not by_label:
        raise ValueError(f"{manifest} has no rows in split {split!r}")
    interleaved = [p for group in _zip_longest(*by_label.values()) for p in group]
    return interleaved[:limit] if limit else interleaved


def _zip_longest(*lists: list[Path]) -> Iterator[list[Path]]:
    for i in range(max(len(x) for x in lists)):
        yield [x[i] for x in lists if i < len(x)]


def load_inputs(paths: Sequence[Path], bundle: ModelBundle) -> np.ndarray:
    """Decode and preprocess images as ``Detector.load_input`` does: ``(N, 3, size, size)`` float32."""
    cfg = bundle.preprocess
    return np.stack([preprocess(decode_image(p, draft_size=cfg.size), cfg) for p in paths])


class ArrayReader:
    """A calibration data reader (onnxruntime's ``CalibrationDataReader`` protocol) over an array,
    one image per call so calibration memory stays small."""

    def __init__(self, input_name: str, x: np.ndarray):
        self.input_name = input_name
        self.x = x
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self.x):
            return None
        item = {self.input_name: self.x[self._i:self._i + 1]}
        self._i += 1
        return item

    def rewind(self) -> None:
        self._i = 0


def fold_static_padding(model, input_size: int):
    """Replace the run-time "SAME" padding arithmetic of TF-ported backbones by constants.

    timm's ``tf_*`` models pad stride-2 convolutions with ``F.pad`` amounts computed from the
    input's height and width; the export keeps that arithmetic (Shape, Gather, Ceil, ...) because
    the batch axis is dynamic. onnxruntime cannot then fuse the Pad into the Conv, and every such
    Pad drops its NCHWc convolution chain back to NCHW and out again (ReorderOutput, Pad,
    ReorderInput: about 30% of the CPU time of tf_efficientnet_lite0, measured with
    ``bench/model_benchmark.py --profile``). The input's spatial size is fixed by the model card,
    so the pads are constants: they are evaluated for two batch sizes, must agree, and become
    initializers; the arithmetic that fed them is dropped. Returns a new ModelProto; a model
    without computed pads comes back unchanged (a copy).
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    computed = sorted({name for node in graph.node if node.op_type == "Pad"
                       for name in node.input[1:] if name and name not in constants})
    if not computed:
        return model
    probe = copy.deepcopy(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in computed)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    values = []
    for batch in (1, 2):
        x = np.zeros((batch, 3, input_size, input_size), np.float32)
        values.append(session.run(computed, {inp.name: x}))
    for name, a, b in zip(computed, *values):
        if not np.array_equal(a, b):
            raise ValueError(f"Pad input {name} depends on the batch size; cannot fold it")
    folded = {name: f"{name}_folded" for name in computed}
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), folded[name])
                             for name, v in zip(computed, values[0]))
    for node in graph.node:
        if node.op_type == "Pad":
            for i, name in enumerate(node.input):
                if name in folded:
                    node.input[i] = folded[name]
    _drop_dead_nodes(graph)
    onnx.checker.check_model(model)
    return model


def _drop_dead_nodes(graph) -> None:
    """Remove nodes whose outputs no graph output depends on, and initializers nothing reads."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    unused = [t for t in graph.initializer if t.name not in needed]
    for t in unused:
        graph.initializer.remove(t)
    # Shape information of dropped intermediates is stale; onnxruntime re-infers what it needs.
    live = {o for node in graph.node for o in node.output}
    stale = [v for v in graph.value_info if v.name not in live]
    for v in stale:
        graph.value_info.remove(v)


def output_layers(path: Path) -> list[str]:
    """Names of the Gemm/MatMul nodes that write a graph output (the classifier).

    They stay in float32: quantised, the logit would be clipped to the range seen in calibration
    (a confident score would saturate), and the classifier is a negligible share of the work."""
    import onnx

    graph = onnx.load(str(path)).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul") and set(n.output) & outputs]


def named_nodes(path: Path, patterns: tuple[str, ...]) -> list[str]:
    """Names of the graph's nodes that match one of ``patterns`` (regular expressions, the whole name)."""
    if not patterns:
        return []
    import re

    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if any(re.fullmatch(p, n.name) for p in patterns)]


def prepare(src: Path, dst: Path) -> None:
    """onnxruntime's recommended pre-processing before quantisation: symbolic shape inference and
    graph optimisation (batch-norm folding, constant folding)."""
    from onnxruntime.quantization import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)


def make_variant(variant: str, prepared: Path, folded: Path, dst: Path, input_name: str,
                 calib: np.ndarray | None, method: str, keep_float: tuple[str, ...] = ()) -> dict:
    """Write ``dst`` (an ONNX file) for one variant; return the card's ``quantization`` section.

    ``folded`` is the float32 graph after :func:`fold_static_padding`, ``prepared`` the same after
    :func:`prepare` (the input of the int8 quantisers). Static variants keep the output layers in float32, and
    every node whose whole name matches a pattern of ``keep_float``."""
    from onnxruntime import quantization as q

    if variant == "fp32-static-pad":
        shutil.copyfile(folded, dst)
        return {"kind": "float32", "graph": "SAME padding folded to constants (fused into Conv by onnxruntime)"}
    if variant in STATIC_VARIANTS:
        fmt, per_channel, reduce_range = STATIC_VARIANTS[variant]
        if calib is None:
            raise ValueError(f"{variant} needs calibration images")
        q.quantize_static(
            str(prepared), str(dst), ArrayReader(input_name, calib),
            quant_format=q.QuantFormat.QDQ if fmt == "QDQ" else q.QuantFormat.QOperator,
            per_channel=per_channel, reduce_range=reduce_range,
            activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
            calibrate_method={"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                              "percentile": q.CalibrationMethod.Percentile}[method],
            nodes_to_exclude=(excluded := output_layers(prepared) + named_nodes(prepared, keep_float)),
        )
        return {"kind": "static int8", "format": fmt, "per_channel": per_channel, "reduce_range": reduce_range,
                "activations": "uint8 (asymmetric)", "weights": "int8 (symmetric)",
                "calibration": {"method": method, "images": int(len(calib))},
                "kept_in_float32": excluded}
    if variant == "int8-dynamic":
        q.quantize_dynamic(str(prepared), str(dst), weight_type=q.QuantType.QUInt8)
        return {"kind": "dynamic int8", "weights": "uint8", "activations": "uint8, range from each batch"}
    if variant == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # From the folded graph, not the pre-processed one: shape inference adds value_info that
        # the converter would otherwise have to keep consistent.
        model = convert_float_to_float16(onnx.load(str(folded)), keep_io_types=True)
        onnx.save(model, str(dst))
        return {"kind": "float16", "weights": "float16", "activations": "float16",
                "io": "float32 input and output (casts inside the graph)"}
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


def variant_card(card: dict, variant: str, section: dict) -> dict:
    """The source card with the variant's version suffix and a ``quantization`` section."""
    import onnxruntime

    out = copy.deepcopy(card)
    out["version"] = f"{card['version']}+{variant}"
    section = dict(section, variant=variant, source_onnx_sha256=card["onnx_sha256"],
                   note="metrics, calibration and thresholds are the source model's; "
                        "bench/model_benchmark.py measures this variant's accuracy")
    out["quantization"] = section
    out["libraries"] = dict(card.get("libraries", {}), onnxruntime=onnxruntime.__version__,
                            python=platform.python_version())
    return out


def main(args: argparse.Namespace) -> dict:
    import onnx

    bundle = ModelBundle.from_dir(args.model)
    calib = None
    if any(v in STATIC_VARIANTS for v in args.variants):
        paths = manifest_paths(args.manifest, args.split, args.calibration_images)
        calib = load_inputs(paths, bundle)
    args.out.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory(prefix="quant-") as tmp:
        folded, prepared = Path(tmp) / "folded.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(fold_static_padding(onnx.load(str(bundle.onnx_path)), bundle.preprocess.size), str(folded))
        prepare(folded, prepared)
        for variant in args.variants:
            t0 = time.perf_counter()
            dst = args.out / variant
            dst.mkdir(parents=True, exist_ok=True)
            section = make_variant(variant, prepared, folded, dst / ONNX_FILE,
                                   bundle.input_name, calib, args.method)
            section["seconds"] = round(time.perf_counter() - t0, 1)
            write_model_json(dst, variant_card(bundle.card, variant, section))
            ModelBundle.from_dir(dst)  # refuse to report a directory the detector would not load
            written[variant] = str(dst)
            print(f"{variant}: {dst / ONNX_FILE} ({(dst / ONNX_FILE).stat().st_size / 1e6:.1f} MB, "
                  f"{section['seconds']} s)", file=sys.stderr)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / "quantize_args.json").write_text(json.dumps({"args": settings, "written": written}, indent=2))
    return written


def cli(argv: list[str] | None = None) -> int:
    main(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
