"""Would averaging two detectors rank what neither trained on better than either alone?

Scores the ComfyUI templates (generators no model here trained on) against the fair human reference of
candidates/fair_reference.py (713 test works that neither the v8 nor the v9 split trained, nor their near twins)
with each model and with their mean calibrated log-odds, the rule an ensemble export would use; and, as a second
human side, against the human art that data/realworld-v9 does not hold (`make unseen-human`'s files: the kinds
kept for evaluation, and the catalogue's and the Met's files too small for the dataset; run that target first, it
writes their provenance under data/). AUROC per reference, with paired bootstraps of ensemble minus the better single
model and of the second model minus the first (a candidate against the shipped model). Usage, from the repository root:

    .venv/bin/python candidates/ensemble_reference.py MODEL_DIR MODEL_DIR [--json OUT]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from fair_reference import references
from mimicry.detector import Detector
from mimicry.training.source_flags import not_held, read_provenance


def log_odds(score: float) -> float:
    p = min(max(score, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def paired_bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> list[float]:
    """2.5th and 97.5th percentiles of AUROC(a) - AUROC(b) over resamples of each class (stratified)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        diffs.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    return [round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)]


def templates_and_references() -> tuple[list[dict], dict[str, list[dict]]]:
    """The ComfyUI templates' provenance rows, and the two human references: the fair test works and the human
    art data/realworld-v9 does not hold."""
    refs = {"fair": references()["fair"]}
    human = [r for name in ("unseen_kinds", "debian_art", "package_art")
             for r in read_provenance(Path(f"data/{name}.jsonl")) if r["label"] == "human"]
    refs["unseen human"] = not_held(human, Path("data/realworld-v9/manifest.jsonl"))
    ai = [r for r in read_provenance(Path("data/package_ai.jsonl")) if r["source"] == "comfyui-templates"]
    return ai, refs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ai, refs = templates_and_references()
    paths = list(dict.fromkeys(r["abs_path"] for rows in (ai, *refs.values()) for r in rows))
    odds = []
    for model in args.models:
        det = Detector.from_dir(model)
        odds.append({p: log_odds(v.score) for p, v in zip(paths, det.stream(paths)) if v.error is None})
    both = set(odds[0]) & set(odds[1])
    out = {"models": args.models, "templates": len(ai), "references": {}}
    for name, ref in refs.items():
        kept = [r for r in ai + ref if r["abs_path"] in both]
        y = np.array([0 if r["label"] == "human" else 1 for r in kept])
        s = [np.array([o[r["abs_path"]] for r in kept]) for o in odds]
        mean = (s[0] + s[1]) / 2
        single = [roc_auc_score(y, x) for x in s]
        best = int(np.argmax(single))
        out["references"][name] = {
            "n_ai": int(y.sum()), "n_human": int((y == 0).sum()),
            "auroc": {args.models[0]: round(single[0], 4), args.models[1]: round(single[1], 4),
                      "mean log-odds": round(roc_auc_score(y, mean), 4)},
            "ensemble minus better single, 95% interval": paired_bootstrap(y, mean, s[best]),
            "second minus first, 95% interval": paired_bootstrap(y, s[1], s[0]),
        }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
