"""Benchmark: what one image costs before the model, step by step, on one thread.

The steps of ``Detector.load`` for a 1-megapixel JPEG, timed apart on the same files in one run:

* **decode**: ``decode_image`` with the JPEG draft scale the detector asks for (the model's input size);
* **resize**: the centred square to the input size, with the card's interpolation;
* **normalise**: the 8-bit image to the model's float32 CHW input, two ways: the float32 arithmetic
  over the whole image (``(x/255 - mean)/std``, what ``preprocess`` did before 1.7's speed work: the
  baseline) and the per-level table ``preprocess`` uses now. The two arrays are checked to be equal bit for bit
  on every file before any time is reported.

Each figure is the best of ``--repeats`` passes over the files, in milliseconds per image.

``python bench/preprocess_benchmark.py --model models/default --n 100``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mimicry.detector.bundle import ModelBundle  # noqa: E402
from mimicry.detector.decode import decode_image  # noqa: E402
from mimicry.detector.preprocess import INTERPOLATIONS, preprocess  # noqa: E402
from scan_benchmark import make_jpegs  # noqa: E402


def float_formula(image: Image.Image, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The baseline: float32 arithmetic over every pixel, then a contiguous CHW copy."""
    x = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def best_ms(fn, items: list, repeats: int) -> tuple[float, list]:
    best, out = float("inf"), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = [fn(x) for x in items]
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e3, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/default", help="a model folder (its card gives the input)")
    ap.add_argument("--n", type=int, default=100, help="distinct 1024 x 1024 JPEGs")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)

    cfg = ModelBundle.from_dir(args.model).preprocess
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        blobs = [p.read_bytes() for p in make_jpegs(Path(tmp), args.n)]

    decode_ms, images = best_ms(lambda b: decode_image(b, draft_size=cfg.size), blobs, args.repeats)
    if cfg.detail is not None:
        raise SystemExit(f"this benchmark times one resize; the card's detail {cfg.detail} adds an area average first")
    # The files are square, so either resize policy is one resize of the whole image, as preprocess makes it.
    resample = INTERPOLATIONS[cfg.interpolation]
    resize_ms, squares = best_ms(lambda im: im.resize((cfg.size, cfg.size), resample), images, args.repeats)
    formula_ms, by_formula = best_ms(lambda im: float_formula(im, mean, std), squares, args.repeats)
    table_ms, by_table = best_ms(lambda im: preprocess(im, cfg), squares, args.repeats)  # already at size: no resample
    if not all(np.array_equal(a, b) for a, b in zip(by_formula, by_table)):
        raise SystemExit("the table's arrays differ from the float formula's: not the same preprocessing")
    whole_ms, _ = best_ms(lambda b: preprocess(decode_image(b, draft_size=cfg.size), cfg), blobs, args.repeats)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "model_input": cfg.to_dict(), "files": args.n, "decoded_size": list(images[0].size), "repeats": args.repeats,
        "ms_per_image": {"decode": decode_ms, "resize": resize_ms, "normalise_float_formula": formula_ms,
                         "normalise_table": table_ms, "decode_resize_normalise": whole_ms},
        "normalise_speedup": formula_ms / table_ms, "identical": True,
    }
    print(f"{args.n} JPEGs 1024x1024, decoded at {images[0].size[0]} px, input {cfg.size} px, best of {args.repeats}:")
    for k, v in result["ms_per_image"].items():
        print(f"  {k:28s} {v:6.2f} ms/image")
    print(f"  normalise: table {result['normalise_speedup']:.1f}x faster than the float formula, arrays identical")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
