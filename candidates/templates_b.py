"""Score the never-seen half of the ComfyUI templates (candidates/templates_half.py) against the 713 fair human
works (candidates/fair_reference.py) with each model: AUROC, the share of the half flagged at each model's own
threshold, and a paired bootstrap of the second model's AUROC minus the first's. Usage, from the repository root:

    .venv/bin/python candidates/templates_b.py BASELINE_MODEL_DIR MODEL_DIR [--json OUT]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ensemble_reference import paired_bootstrap
from fair_reference import references
from mimicry.detector import Detector
from mimicry.training.source_flags import read_provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ai = read_provenance(Path("data/package_ai-half-b.jsonl"))
    human = references()["fair"]
    paths = [r["abs_path"] for r in ai + human]
    verdicts = []
    for model in args.models:
        det = Detector.from_dir(model)
        verdicts.append(dict(zip(paths, det.stream(paths))))
    kept = [r for r in ai + human if all(v[r["abs_path"]].error is None for v in verdicts)]
    y = np.array([0 if r["label"] == "human" else 1 for r in kept])
    out = {"models": args.models, "n_ai": int(y.sum()), "n_human": int((y == 0).sum()), "per_model": {}}
    scores = []
    for model, v in zip(args.models, verdicts):
        s = np.array([v[r["abs_path"]].score for r in kept])
        labels = [v[r["abs_path"]].label for r in kept]
        scores.append(s)
        out["per_model"][model] = {
            "auroc": round(roc_auc_score(y, s), 4),
            "half b flagged": round(sum(lab == "ai-mimicry" for lab, t in zip(labels, y) if t) / y.sum(), 3),
            "fair human flagged": sum(lab == "ai-mimicry" for lab, t in zip(labels, y) if not t),
        }
    out["second minus first, 95% interval"] = paired_bootstrap(y, scores[1], scores[0])
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
