"""Frozen ImageNet features read at every depth, and a linear probe on them, on the leave-one-source-out pairs.

A probe, not a product path. The packaged
ImageNet EfficientNet-Lite0, never fine-tuned, exported once to ONNX (runs/probe/features.onnx), gives every image
the detector's input (the centred square at 320 px) and returns its pooled final features (1280) beside the mean
and standard deviation over the picture of the outputs of stages 1-6 (texture statistics, 1536). Features are
computed once per file and cached under runs/probe/: for every normalised training file of data/realworld-v8 (the
pairs' manifests point at those files) and for every published image (a sheet's cell cut out) clean, after JPEG 75
and at half size (realworld_eval's perturbations).

For each pair's manifest: a logistic regression on the train split's normalised files (standardised features,
classes weighted alike; with ``--views K``, on K views of each drawn by finetune's realworld augmentation instead,
the regime the fine-tuned recipe trains under), its threshold at 1% of the val split's human works; then the test
split's published images read as the pair's runs are read: the never-seen AI source's AUROC against every human
test work, against the paintings alone, and the human sources' shares flagged, per condition.

    .venv/bin/python candidates/stats_probe.py data/realworld-loso-{a,b,c}-v8/manifest.jsonl [--views K] [--json OUT]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.metrics import roc_auc_score

from mimicry.detector.decode import decode_image
from mimicry.detector.preprocess import PreprocessConfig, preprocess
from mimicry.training.probe import logistic_probe
from mimicry.training.realworld_eval import load_published, perturb, published_items

CFG = PreprocessConfig(size=320, resize="shorter_then_center_crop", interpolation="bicubic",
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
WORK = Path("runs/probe")
V8 = Path("data/realworld-v8/manifest.jsonl")
CONDITIONS = ("clean", "jpeg75", "resize0.5")
SETS = {"final": slice(0, 1280), "stats": slice(1280, None), "final+stats": slice(0, None),
        # what a run that froze five stages computes anyway: the statistics of stages 1-4 (no extra model time)
        "stats1-4": slice(1280, 1280 + 2 * (24 + 40 + 80 + 112)),
        # and with the frozen stage 5 as well (its statistics; stage 6 and the head convolution left out)
        "stats1-5": slice(1280, 1280 + 2 * (24 + 40 + 80 + 112 + 192))}


def feature_graph() -> Path:
    path = WORK / "features.onnx"
    if path.exists():
        return path
    import torch

    from mimicry.training.probe import frozen_features

    WORK.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(frozen_features("tf_efficientnet_lite0"), (torch.zeros(1, 3, 320, 320),), str(path),
                      input_names=["input"], output_names=["features"], dynamic_axes={"input": {0: "n"}, "features": {0: "n"}},
                      opset_version=17, dynamo=False)
    return path


class Extractor:
    def __init__(self):
        self.session = ort.InferenceSession(str(feature_graph()), providers=["CPUExecutionProvider"])

    def __call__(self, arrays: list[np.ndarray]) -> np.ndarray:
        return self.session.run(None, {"input": np.stack(arrays).astype(np.float32)})[0]


def cached(name: str, keys: list[str], inputs, batch: int = 32) -> dict[str, np.ndarray]:
    """{key: feature vector}, computed for the keys runs/probe/NAME.npz does not hold yet."""
    path = WORK / f"{name}.npz"
    have = dict(np.load(path)) if path.exists() else {}
    todo = [k for k in keys if k not in have]
    if todo:
        ex = Extractor()
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            for k, f in zip(chunk, ex([inputs(k) for k in chunk])):
                have[k] = f
            if (i // batch) % 25 == 0:
                print(f"  {name}: {i + len(chunk)}/{len(todo)}", flush=True)
        np.savez(path, **have)
    return have


def view_features(rows: list[dict], k: int) -> dict[str, np.ndarray]:
    """Features of view ``k`` of every normalised file: the file as a training epoch ``k`` draws it (finetune's
    realworld augmentation, the same regime for both classes: crops, downscales, JPEG/WebP re-encoding, colour)."""
    from mimicry.training.finetune import ManifestDataset

    manifest = WORK / "all-rows.jsonl"
    by_sha = {r["sha256"]: r for r in rows}
    manifest.write_text("".join(json.dumps({**r, "path": str((V8.parent / r["path"]).resolve()), "split": "train"})
                                + "\n" for r in by_sha.values()))
    ds = ManifestDataset(manifest, "train", CFG, augment="realworld", seed=0)
    ds.epoch = k
    index = {r["sha256"]: i for i, r in enumerate(ds.rows)}
    return cached(f"view{k}", sorted(by_sha), lambda key: ds[index[key]][0].numpy())


def reencoded_features(rows: list[dict], k: int) -> dict[str, np.ndarray]:
    """Features of view ``k`` of every normalised file under re-encoding alone: with probability 0.5 the file is
    re-encoded (finetune's draw: JPEG or WebP, quality 40-95), then read as the detector reads it (no crop,
    enlargement, colour or blur step)."""
    import random

    from mimicry.training.finetune import _reencode

    by_sha = {r["sha256"]: str(V8.parent / r["path"]) for r in rows}

    def view(key: str) -> np.ndarray:
        rng = random.Random(f"{k}:{key}")
        image = decode_image(Path(by_sha[key]))
        return preprocess(_reencode(image, rng) if rng.random() < 0.5 else image, CFG)

    return cached(f"reencode{k}", sorted(by_sha), view)


def fit_probe(features: list, train: list[dict], cols: slice):
    """The probe: a standardised logistic regression (C 0.1, classes weighted alike) on every training row's vector
    in each of ``features`` (one sha256 -> vector mapping per view, or the files themselves)."""
    clf = logistic_probe(0.1)
    clf.fit(np.stack([f[r["sha256"]][cols] for f in features for r in train]),
            np.tile([r["label"] != "human" for r in train], len(features)))
    return clf


def cached_views(views: int) -> list:
    """What the probe is fitted on, from the caches this script wrote: ``views`` augmented views (realworld
    regime), or with none the normalised files themselves."""
    return [np.load(WORK / f"view{k}.npz") for k in range(views)] or [np.load(WORK / "normalised.npz")]


def item_key(r: dict) -> str:
    return f"{r['origin_path']}#{r.get('cell')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifests", nargs="+", type=Path)
    ap.add_argument("--views", type=int, default=0,
                    help="fit on this many augmented views of each training file instead of the file itself")
    ap.add_argument("--regime", choices=["realworld", "reencode"], default="realworld",
                    help="the views' augmentation: finetune's whole realworld regime, or its re-encoding alone")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [json.loads(x) for x in V8.read_text().splitlines() if x.strip()]
    by_sha = {r["sha256"]: str(V8.parent / r["path"]) for r in rows}
    norm = cached("normalised", sorted(by_sha), lambda k: preprocess(decode_image(Path(by_sha[k])), CFG))
    views = view_features if args.regime == "realworld" else reencoded_features
    fit_on = [views(rows, k) for k in range(args.views)] or [norm]
    items = {}
    for split in ("train", "val", "test", "excluded"):
        for r in published_items(V8, split):
            items.setdefault(item_key(r), r)
    cache: dict = {}
    published = {c: cached(f"published-{c}", sorted(items), lambda k, c=c: preprocess(
        perturb(load_published(items[k], cache), c, 0), CFG)) for c in CONDITIONS}
    out = {}
    for manifest in args.manifests:
        mrows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
        train = [r for r in mrows if r["split"] == "train"]
        val = [r for r in mrows if r["split"] == "val" and r["label"] == "human"]
        test = published_items(manifest, "test")
        held = json.loads((manifest.parent / "dataset.json").read_text()).get("holdout_sources", [])
        res = {"held out": held, "n train": len(train), "views": args.views, "regime": args.regime, "n test": len(test)}
        human = np.array([r["label"] == "human" for r in test])
        for name, cols in SETS.items():
            clf = fit_probe(fit_on, train, cols)
            v = np.sort(clf.decision_function(np.stack([norm[r["sha256"]][cols] for r in val])))
            t = v[int(np.ceil(0.99 * v.size)) - 1]
            got = {}
            for c in CONDITIONS:
                s = clf.decision_function(np.stack([published[c][item_key(r)][cols] for r in test]))
                g = {"auroc": {}, "flagged": {}}
                for src in sorted({r["source"] for r in test}):
                    m = np.array([r["source"] == src for r in test])
                    if (m & ~human).any():
                        yy = np.r_[np.ones((m & ~human).sum()), np.zeros(human.sum())]
                        g["auroc"][src] = round(roc_auc_score(yy, np.r_[s[m & ~human], s[human]]), 4)
                        g["flagged"][f"{src} (ai)"] = round(float((s[m & ~human] > t).mean()), 3)
                    if (m & human).any() and (s[m & human] > t).any():
                        g["flagged"][src] = f"{int((s[m & human] > t).sum())}/{int((m & human).sum())}"
                g["flagged"]["all human"] = f"{int((s[human] > t).sum())}/{int(human.sum())}"
                paint = np.array([r["source"].endswith("paintings") for r in test]) & human
                for src in held:
                    m = np.array([r["source"] == src for r in test]) & ~human
                    if m.any() and paint.any():
                        yy = np.r_[np.ones(m.sum()), np.zeros(paint.sum())]
                        g["auroc"][f"{src} against the paintings alone"] = round(
                            roc_auc_score(yy, np.r_[s[m], s[paint]]), 4)
                got[c] = g
            res[name] = got
            print(manifest, name, json.dumps(got["clean"]), flush=True)
        out[str(manifest)] = res
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
