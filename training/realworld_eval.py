"""Evaluate detectors on a real-world dataset (``mimicry.training.external``), per source and generator.

Every image is scored **as published** (the original file; a contact sheet's cell cut out in memory), clean
and under what platforms and re-posters do (JPEG 75 and 50 at full size, half size, a centre crop of half of
each side), plus two colour controls in which palette carries no label (greyscale; a random hue rotation
with a random saturation scale). For each AI source: AUROC against all human works of the split and the
share flagged at the model's threshold; for each human source: the share flagged. Two input policies are
compared on the clean images: ``center`` (what ``Detector`` does: the centred square) and ``tiles`` (the mean
logit over the squares that cover the image along its longer side, as the dataset stores them).

Beside every model, the shortcut baselines of :mod:`mimicry.training.baselines`, fit on the train split:
file facts of the published files, file facts of the normalised stored files, colour statistics.

``python -m mimicry.training.realworld_eval --models models/default --manifest data/realworld/manifest.jsonl
--json runs/realworld_eval.json``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mimicry.detector.decode import decode_image
from mimicry.detector.detector import Detector
from mimicry.detector.preprocess import preprocess
from mimicry.training import baselines
from mimicry.training.external import MAX_SOURCE_PIXELS, square_tiles

PERTURBATIONS = ("clean", "jpeg75", "jpeg50", "webp75", "resize0.5", "upscale2", "thumb160", "centre_crop50", "grey",
                 "hue")


def perturb(image: Image.Image, name: str, index: int) -> Image.Image:
    """One named perturbation of an RGB image (deterministic per ``index``)."""
    if name == "clean":
        return image
    if name in ("jpeg75", "jpeg50", "webp75"):  # WebP: what many platforms serve an upload as
        buf = io.BytesIO()
        image.save(buf, format=name[:4].upper(), quality=int(name[4:]))
        return decode_image(buf.getvalue(), max_pixels=MAX_SOURCE_PIXELS, max_bytes=1 << 30)
    if name == "upscale2":  # enlarged before posting, as generated images often are (Lanczos, twice each side)
        w, h = image.size
        return image.resize((2 * w, 2 * h), Image.Resampling.LANCZOS)
    if name == "resize0.5":
        w, h = image.size
        return image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC)
    if name == "thumb160":  # a small copy (a thumbnail, an avatar): the detector enlarges it to its input
        w, h = image.size
        scale = 160 / min(w, h)
        return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    if name == "centre_crop50":
        w, h = image.size
        return image.crop((w // 4, h // 4, w // 4 + max(1, w // 2), h // 4 + max(1, h // 2)))
    if name == "grey":
        return ImageOps.grayscale(image).convert("RGB")
    if name == "hue":
        rng = np.random.default_rng(index)
        hsv = np.asarray(image.convert("HSV")).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(40, 216))) % 256
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
        return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    raise ValueError(f"unknown perturbation {name!r}; known: {PERTURBATIONS}")


def published_items(manifest: Path, split: str) -> list[dict]:
    """One item per published image of ``split`` (a sheet's cell, or a whole file; tiles folded back)."""
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    seen, items = set(), []
    for r in rows:
        if r["split"] != split:
            continue
        key = (r["origin"], tuple(r["cell"]) if r.get("cell") else None)
        if key in seen:
            continue
        seen.add(key)
        items.append(r)
    return items


def load_published(row: dict, cache: dict) -> Image.Image:
    """The image as published: the original file decoded, and a contact sheet's cell cut out."""
    path = row["origin_path"]
    if path not in cache:
        cache.clear()  # a sheet's cells are consecutive in the manifest; keep one decoded file
        cache[path] = decode_image(Path(path), max_pixels=MAX_SOURCE_PIXELS, max_bytes=1 << 30)
    image = cache[path]
    if row.get("cell"):
        cw, ch = row["orig_width"], row["orig_height"]
        c, r = row["cell"]
        return image.crop((c * cw, r * ch, (c + 1) * cw, (r + 1) * ch))
    return image


def tile_inputs(image: Image.Image, det: Detector) -> np.ndarray:
    cfg = det.config
    return np.stack([preprocess(image.resize((cfg.size, cfg.size), Image.Resampling.BICUBIC, box=box), cfg)
                     for box in square_tiles(*image.size)])


def score_items(det: Detector, items: list[dict], perturbations: tuple[str, ...],
                tiles: bool) -> dict[str, np.ndarray]:
    """Calibrated scores of every item under every perturbation (and ``tiles`` on clean images)."""
    cal = det.bundle.calibration
    logits = defaultdict(list)
    cache: dict = {}
    t0 = time.time()
    for i, row in enumerate(items):
        image = load_published(row, cache)
        batch, names = [], []
        for name in perturbations:
            batch.append(preprocess(perturb(image, name, i), det.config))
            names.append(name)
        out = det.predict_arrays(np.stack(batch))
        for name, lg in zip(names, out):
            logits[name].append(float(lg))
        if tiles:
            logits["tiles"].append(float(det.predict_arrays(tile_inputs(image, det)).mean()))
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(items)} images, {time.time() - t0:.0f} s", file=sys.stderr)
    return {k: cal(np.array(v)) for k, v in logits.items()}


def per_source_metrics(scores: np.ndarray, items: list[dict], threshold: float) -> dict:
    """AUROC of each AI source against all human works, flagged shares per source, pooled figures."""
    from sklearn.metrics import roc_auc_score

    y = np.array([r["label"] == "ai-mimicry" for r in items])
    # A source holding both classes (the demo's works and their mimicry) is reported as two entries.
    mixed = {s for s in {r["source"] for r in items}
             if len({r["label"] for r in items if r["source"] == s}) > 1}
    src = np.array([f"{r['source']} ({r['label']})" if r["source"] in mixed else r["source"] for r in items])
    out = {"pooled": {"auroc": float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None,
                      "ai_flagged": float((scores[y] >= threshold).mean()) if y.any() else None,
                      "human_flagged": float((scores[~y] >= threshold).mean()) if (~y).any() else None,
                      "n_ai": int(y.sum()), "n_human": int((~y).sum())}}
    for s in sorted(set(src)):
        m = src == s
        is_ai = bool(y[m].all())
        entry = {"label": "ai-mimicry" if is_ai else "human", "n": int(m.sum()),
                 "flagged": float((scores[m] >= threshold).mean())}
        if is_ai and (~y).any():
            sel = m | ~y
            entry["auroc"] = float(roc_auc_score(y[sel], scores[sel]))
        out[s] = entry
    return out


def baseline_scores(manifest: Path, train: str, items: list[dict]) -> dict[str, dict]:
    """Shortcut baselines fit on ``train`` and scored on ``items``: per-source metrics at 0.5."""
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    train_rows = [r for r in rows if r["split"] == train]
    root = manifest.parent
    y_train = np.array([r["label"] == "ai-mimicry" for r in train_rows])
    out = {}
    # File facts of the published files (a sheet's facts for each of its cells).
    fact_cache: dict[str, np.ndarray] = {}

    def facts(path: str) -> np.ndarray:
        if path not in fact_cache:
            fact_cache[path] = baselines.file_facts(Path(path).read_bytes())
        return fact_cache[path]

    x_tr = np.stack([facts(r["origin_path"]) for r in train_rows])
    x_te = np.stack([facts(r["origin_path"]) for r in items])
    out["file facts, as published"] = per_source_metrics(baselines.fit_score(x_tr, y_train, x_te), items, 0.5)
    x_tr = np.stack([baselines.file_facts((root / r["path"]).read_bytes()) for r in train_rows])
    x_te = np.stack([baselines.file_facts((root / r["path"]).read_bytes()) for r in items])
    out["file facts, normalised"] = per_source_metrics(baselines.fit_score(x_tr, y_train, x_te), items, 0.5)
    x_tr = np.stack([baselines.colour_features(Image.open(root / r["path"])) for r in train_rows])
    x_te = np.stack([baselines.colour_features(Image.open(root / r["path"])) for r in items])
    out["colour statistics"] = per_source_metrics(baselines.fit_score(x_tr, y_train, x_te), items, 0.5)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, nargs="+", required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--train-split", default="train", help="the split the baselines are fit on")
    p.add_argument("--perturbations", nargs="*", default=list(PERTURBATIONS), choices=PERTURBATIONS,
                   metavar="NAME", help=f"which to score; clean always is, every table compares against it "
                                        f"(default: all of {', '.join(PERTURBATIONS)})")
    p.add_argument("--no-tiles", action="store_true")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--scores-out", type=Path, default=None, metavar="JSONL",
                   help="also write every image's score: one line per model and image (model, source, label, "
                        "group, threshold, and the score under each perturbation)")
    args = p.parse_args(argv)
    # Clean first, whether named or not: the goal rows, the alternative thresholds and the threshold study all
    # read it, and a run that named only its perturbations used to lose it silently.
    args.perturbations = ["clean", *dict.fromkeys(n for n in args.perturbations if n != "clean")]
    return args


def write_scores(path: Path, model: str, threshold: float, items: list[dict], scores: dict[str, np.ndarray]) -> None:
    """Append one JSON line per image: what a threshold study needs (mimicry.training.threshold_margin)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for i, row in enumerate(items):
            f.write(json.dumps({"model": model, "source": row["source"], "label": row["label"],
                                "group": row.get("group"), "threshold": threshold,
                                "scores": {k: float(v[i]) for k, v in scores.items()}}) + "\n")


RECIPE_KEYS = ("backbone", "input_size", "balance", "seed", "epochs", "freeze_blocks", "augment", "small_sources",
               "mixed_precision", "crops", "focal_gamma", "ema_decay", "cutmix", "hue")


def recipe(card: dict) -> dict:
    """What tells one training run from another in a comparison: the card's training settings that vary
    between runs (absent ones, as in cards written before a setting existed, are left out)."""
    settings = card.get("training", {}).get("settings", {})
    out = {k: settings[k] for k in RECIPE_KEYS if k in settings}
    if card.get("quantization"):  # the graph that ships is part of the recipe: its threshold is fitted on it
        out["graph"] = str(card["quantization"].get("kind", "quantised"))
    if card.get("ensemble"):  # so is averaging several runs' logits
        out["ensemble"] = len(card["ensemble"]["members"])
    if card.get("probe"):  # and a frozen-feature probe beside the run (its views of each training file)
        out["probe_views"] = int(card["probe"]["fitted"]["views"])
    if card.get("thresholds", {}).get("min_source_works"):  # the threshold rule is part of it too
        out["min_source_works"] = int(card["thresholds"]["min_source_works"])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    items = published_items(args.manifest, args.split)
    if not items:
        print(f"error: no rows in the {args.split} split of {args.manifest}", file=sys.stderr)
        return 2
    data_file = args.manifest.parent / "dataset.json"
    described = json.loads(data_file.read_text()) if data_file.is_file() else {}
    held_out = described.get("holdout_sources", [])
    # The dataset whose images these are (a leave-one-source-out split names the dataset it split anew): two
    # runs share a recipe only if they also share their data.
    data = described.get("resplit_of") or str(args.manifest.parent)
    result = {"manifest": str(args.manifest), "data": data, "split": args.split, "n": len(items),
              "held_out": held_out, "models": {}}
    for model_dir in args.models:
        det = Detector.from_dir(model_dir, provenance=False)
        thr = det.bundle.thresholds.ai_mimicry
        print(f"{det.name} {det.version}: {len(items)} images", file=sys.stderr)
        scores = score_items(det, items, tuple(args.perturbations), tiles=not args.no_tiles)
        if args.scores_out is not None:
            write_scores(args.scores_out, str(model_dir), thr, items, scores)
        alternatives = det.bundle.card.get("thresholds", {}).get("alternatives", {})
        result["models"][str(model_dir)] = {
            "name": det.name, "version": det.version, "threshold": thr, "onnx_sha256": det.bundle.card["onnx_sha256"],
            "recipe": recipe(det.bundle.card),
            "by_perturbation": {k: per_source_metrics(v, items, thr) for k, v in scores.items()},
            # The same scores at the thresholds other rules would have chosen (a controlled comparison).
            "at_alternative_thresholds": {
                rule: {"threshold": t, **{k: per_source_metrics(scores[k], items, t)
                                          for k in ("clean", "jpeg75", "resize0.5") if k in scores}}
                for rule, t in alternatives.items()},
        }
    if not args.no_baselines:
        result["baselines"] = baseline_scores(args.manifest, args.train_split, items)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    for model_dir, m in result["models"].items():
        for k, v in m["by_perturbation"].items():
            print(f"{m['name']} {k:14s} " + json.dumps(v["pooled"]))
    for k, v in result.get("baselines", {}).items():
        print(f"baseline {k:28s} " + json.dumps(v["pooled"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
