"""Benchmark: does the heatmap point at the right place, and what does one explanation cost?

Pictures are pasted together from the bundled examples (real works and mimicry of an artist the
bundled model never saw): three of one kind and one of the other in a 2 x 2 mosaic, and a
quarter-size mimicry patch pasted into a real work, in every position. A hit is the odd region
getting the most heat (mimicry) or the least (a real work among mimicry). Both methods of
``mimicry.detector.explain`` run on the same pictures with the same settings; seconds per explanation are
the median over the pictures, on whatever else the machine is doing.

``python bench/explain_benchmark.py --model models/default``
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mimicry.detector import Detector  # noqa: E402
from mimicry.detector.explain import METHODS, explain  # noqa: E402


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def cases(real: list[Image.Image], fake: list[Image.Image]) -> list[tuple[str, bytes, int, bool]]:
    """(kind, PNG bytes, odd quadrant, odd one is mimicry) for every picture."""
    out = []
    n = len(real)
    for i in range(n):
        q = i % 4
        for kind, odd, others, is_fake in (("mimicry among real", fake[i], real, True),
                                           ("real among mimicry", real[i], fake, False)):
            canvas = Image.new("RGB", (256, 256), "white")
            for k in range(4):
                canvas.paste(odd if k == q else others[(i + k + 1) % n], ((k % 2) * 128, (k // 2) * 128))
            out.append((kind, png(canvas), q, is_fake))
        patched = real[i].copy()
        patched.paste(fake[i].resize((64, 64)), ((q % 2) * 64, (q // 2) * 64))
        out.append(("mimicry patch in a real work", png(patched), q, True))
    return out


def quadrant_means(heat: np.ndarray) -> list[float]:
    h, w = heat.shape
    return [float(heat[(k // 2) * h // 2:(k // 2 + 1) * h // 2, (k % 2) * w // 2:(k % 2 + 1) * w // 2].mean())
            for k in range(4)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--examples", type=Path, default=ROOT / "examples")
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--window", type=float, default=0.25)
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)

    det = Detector.from_dir(args.model)
    real = [Image.open(f).convert("RGB") for f in sorted(args.examples.glob("real_*.png"))]
    fake = [Image.open(f).convert("RGB") for f in sorted(args.examples.glob("mimicry_*.png"))]
    pictures = cases(real, fake)
    explain(det, pictures[0][1], grid=args.grid, window=args.window)  # warm-up
    result = {"model": f"{det.name} {det.version}", "grid": args.grid, "window": args.window,
              "pictures": len(pictures), "methods": {}}
    for method in METHODS:
        hits: dict[str, list[int]] = {}
        seconds = []
        for kind, data, q, is_fake in pictures:
            t0 = time.perf_counter()
            ex = explain(det, data, method=method, grid=args.grid, window=args.window)
            seconds.append(time.perf_counter() - t0)
            m = quadrant_means(ex.heat)
            hit = int(np.argmax(m) == q) if is_fake else int(np.argmin(m) == q)
            hits.setdefault(kind, []).append(hit)
        result["methods"][method] = {
            "hits": sum(sum(h) for h in hits.values()),
            "by_kind": {k: f"{sum(h)}/{len(h)}" for k, h in hits.items()},
            "median_s_per_explanation": round(statistics.median(seconds), 3),
            "model_runs_per_explanation": args.grid ** 2 + 1,
        }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
