"""Evaluate exported detectors on a split, clean and under the degradations uploads go through.

Runs the ONNX model through ``detector.Detector`` (exactly what serving runs) on each image of the
split, clean and perturbed, and reports AUROC, AP, TPR at 1% FPR, and the false-positive rate on
human works at the model's own threshold. Used to choose the input policy of the bundled model;
the full robustness report of the quality issue builds on it.

``python -m training.evaluate --models models/a models/b --manifest data/demo/manifest.jsonl``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from detector import Detector
from detector.decode import decode_image


def _jpeg(q: int) -> Callable[[Image.Image], bytes]:
    def f(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return buf.getvalue()
    return f


def _resize(s: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))), Image.Resampling.BICUBIC)


def _centre_crop(im: Image.Image) -> Image.Image:
    w, h = im.size
    return im.crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2))


def _webp(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=80)
    return buf.getvalue()


PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image | bytes]] = {
    "clean": lambda im: im,
    "jpeg95": _jpeg(95),
    "jpeg75": _jpeg(75),
    "jpeg50": _jpeg(50),
    "resize0.5": _resize(0.5),
    "resize0.25": _resize(0.25),
    "centre_crop50": _centre_crop,
    "blur1": lambda im: im.filter(ImageFilter.GaussianBlur(1.0)),
    "webp": _webp,
}


def evaluate(det: Detector, rows: list[dict], root: Path, perturbation: str) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    fn = PERTURBATIONS[perturbation]
    sources = [fn(decode_image(root / r["path"])) for r in rows]
    verdicts = det.predict(sources)
    errors = [v for v in verdicts if v.error]
    if errors:
        raise RuntimeError(f"{len(errors)} images failed under {perturbation}: {errors[0].error}")
    scores = np.array([v.score for v in verdicts])
    y = np.array([r["label"] == "ai-mimicry" for r in rows], dtype=int)
    fpr, tpr, _ = roc_curve(y, scores)
    thr = det.bundle.thresholds.ai_mimicry
    return {"auroc": round(float(roc_auc_score(y, scores)), 4),
            "ap": round(float(average_precision_score(y, scores)), 4),
            "tpr_at_1pct_fpr": round(float(np.max(tpr[fpr <= 0.01])), 4),
            "fpr_at_threshold": round(float((scores[y == 0] >= thr).mean()), 4),
            "tpr_at_threshold": round(float((scores[y == 1] >= thr).mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, nargs="+", required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS), choices=list(PERTURBATIONS))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = [json.loads(x) for x in args.manifest.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["split"] == args.split]
    out = {}
    for m in args.models:
        det = Detector.from_dir(m)
        t0 = time.perf_counter()
        det.predict_arrays(np.zeros((32, 3, det.config.size, det.config.size), np.float32))
        out[str(m)] = {"input": det.bundle.card["input"],
                       "model_only_ms_per_batch32": round((time.perf_counter() - t0) * 1000, 1),
                       **{name: evaluate(det, rows, args.manifest.parent, name) for name in args.perturbations}}
        print(json.dumps({str(m): out[str(m)]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
