"""A fine-tuned leave-one-source-out run beside the frozen-feature probe, and the mean of the two, on the same images.

Reads the features candidates/stats_probe.py cached under runs/probe/ (run it first on the same manifest) and a
fine-tuned run's per-image scores from `make loso-*` (runs/scores/RUN.jsonl for test, runs/scores/val/RUN.jsonl
for val; realworld_eval writes them in the order of published_items). The probe is fitted as stats_probe fits it;
each model's logit (the run's calibrated score as log-odds) is divided by its spread over the val split, and the
mean of the two is the ensemble. With ``--views K`` the probe is fitted on stats_probe's cached augmented views
(realworld regime) instead. All three are read at one rule, 1% of the val split's human works (clean), and the run
alone also at its own threshold. Per condition: the never-seen AI source's AUROC against every human test
work and against the paintings alone, its share flagged, and the human works flagged (the never-seen kind apart).

    .venv/bin/python candidates/probe_ensemble.py data/realworld-loso-c-v8/manifest.jsonl \\
        runs/scores/loso-c-v8-in320-freeze5-cutmix0.5.jsonl [--features final+stats] [--views 2] [--json OUT]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from mimicry.training.realworld_eval import published_items
from stats_probe import CONDITIONS, SETS, WORK, cached_views, fit_probe, item_key

FEATURES = {**SETS, "stats5-6": slice(1792, None)}  # stages 5 and 6 alone: their statistics start at 1280 + 512


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def read_scores(path: Path, items: list[dict]) -> tuple[dict[str, np.ndarray], float]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if len(lines) != len(items) or any(a["source"] != b["source"] for a, b in zip(lines, items)):
        raise ValueError(f"{path} does not hold the {len(items)} images of this split in order")
    return {c: log_odds(np.array([x["scores"][c] for x in lines])) for c in CONDITIONS}, lines[0]["threshold"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("scores", type=Path, help="the run's test scores; its val scores are read from val/ beside it")
    ap.add_argument("--features", choices=sorted(FEATURES), default="stats5-6")
    ap.add_argument("--views", type=int, default=0,
                    help="fit the probe on the cached augmented views (stats_probe --views K, realworld regime)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cols = FEATURES[args.features]
    rows = [json.loads(x) for x in args.manifest.read_text().splitlines() if x.strip()]
    held = json.loads((args.manifest.parent / "dataset.json").read_text())["holdout_sources"]
    pub = {c: np.load(WORK / f"published-{c}.npz") for c in CONDITIONS}
    train = [r for r in rows if r["split"] == "train"]
    clf = fit_probe(cached_views(args.views), train, cols)
    items = {s: published_items(args.manifest, s) for s in ("val", "test")}
    ft = {}
    ft["test"], own_threshold = read_scores(args.scores, items["test"])
    ft["val"], _ = read_scores(args.scores.parent / "val" / args.scores.name, items["val"])
    probe = {s: {c: clf.decision_function(np.stack([pub[c][item_key(r)][cols] for r in items[s]]))
                 for c in CONDITIONS} for s in items}
    sd_ft, sd_probe = ft["val"]["clean"].std(), probe["val"]["clean"].std()
    ways = {"fine-tuned": lambda s, c: ft[s][c], "probe": lambda s, c: probe[s][c],
            "mean": lambda s, c: 0.5 * ft[s][c] / sd_ft + 0.5 * probe[s][c] / sd_probe}
    val_human = np.array([r["label"] == "human" for r in items["val"]])
    test = items["test"]
    human = np.array([r["label"] == "human" for r in test])
    paint = np.array([r["source"].endswith("paintings") for r in test]) & human
    out = {"manifest": str(args.manifest), "run scores": str(args.scores), "features": args.features,
           "views": args.views, "held out": held, "n": {s: len(v) for s, v in items.items()}, "ways": {}}
    for name, way in ways.items():
        v = np.sort(way("val", "clean")[val_human])
        thresholds = {"1% of val human": v[int(np.ceil(0.99 * v.size)) - 1]}
        if name == "fine-tuned":
            thresholds["the run's own"] = float(log_odds(np.array(own_threshold)))
        res = {}
        for c in CONDITIONS:
            s = way("test", c)
            g = {}
            for src in held:
                m = np.array([r["source"] == src for r in test])
                if (m & ~human).any():
                    a = m & ~human
                    g[f"{src} AUROC"] = round(roc_auc_score(np.r_[np.ones(a.sum()), np.zeros(human.sum())],
                                                            np.r_[s[a], s[human]]), 4)
                    g[f"{src} against the paintings"] = round(roc_auc_score(
                        np.r_[np.ones(a.sum()), np.zeros(paint.sum())], np.r_[s[a], s[paint]]), 4)
                    for tn, t in thresholds.items():
                        g[f"{src} flagged at {tn}"] = round(float((s[a] >= t).mean()), 3)
                else:
                    for tn, t in thresholds.items():
                        g[f"{src} flagged at {tn}"] = f"{int((s[m & human] >= t).sum())}/{int((m & human).sum())}"
            other = human & ~np.isin([r["source"] for r in test], held)
            for tn, t in thresholds.items():
                g[f"other human flagged at {tn}"] = f"{int((s[other] >= t).sum())}/{int(other.sum())}"
            res[c] = g
        out["ways"][name] = res
        print(name, json.dumps(res), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
