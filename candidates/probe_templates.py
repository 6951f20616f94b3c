"""The frozen-feature probe beside the shipped model on the generators no model here trained on.

The ComfyUI templates (about 55 generators) against the fair human works and against the human art data/realworld-v9
does not hold (the references of candidates/ensemble_reference.py): the model's own logit, the probe's (fitted as
candidates/stats_probe.py fits it on data/realworld-v8's train split, on its cached augmented views with
``--views K``, else on the files themselves) and their mean, each divided by its spread over v8's val split. AUROC
per reference with a paired bootstrap of mean minus model. Run stats_probe.py first (its caches), `make package-ai`
and `make unseen-human`. Usage, from the repository root:

    .venv/bin/python candidates/probe_templates.py models/default [--views 2] [--condition jpeg75] [--json OUT]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ensemble_reference import log_odds, paired_bootstrap, templates_and_references
from mimicry.detector import Detector
from mimicry.detector.decode import decode_image
from mimicry.detector.preprocess import preprocess
from mimicry.training.source_flags import CONDITIONS, reposted
from stats_probe import CFG, SETS, V8, WORK, cached, cached_views, fit_probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--views", type=int, default=0)
    ap.add_argument("--features", choices=sorted(SETS), default="final+stats")
    ap.add_argument("--condition", choices=CONDITIONS, default="clean",
                    help="every file of both classes re-posted so first (source_flags' conditions)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cols = SETS[args.features]
    rows = [json.loads(x) for x in V8.read_text().splitlines() if x.strip()]
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    clf = fit_probe(cached_views(args.views), train, cols)
    norm = np.load(WORK / "normalised.npz")
    det = Detector.from_dir(args.model)
    val_paths = [str(V8.parent / r["path"]) for r in val]
    model_val = np.array([log_odds(v.score) for v in det.stream(val_paths)])
    probe_val = clf.decision_function(np.stack([norm[r["sha256"]][cols] for r in val]))

    ai, refs = templates_and_references()
    paths = list(dict.fromkeys(r["abs_path"] for rs in (ai, *refs.values()) for r in rs))
    model = {p: log_odds(v.score) for p, v in zip(paths, det.stream(reposted(p, args.condition) for p in paths))
             if v.error is None}
    feats = cached(f"reference-files-{args.condition}", [p for p in paths if p in model], lambda p: preprocess(
        decode_image(reposted(p, args.condition), max_pixels=1 << 28, max_bytes=1 << 30), CFG))
    out = {"model": args.model, "views": args.views, "features": args.features, "condition": args.condition,
           "references": {}}
    for name, ref in refs.items():
        kept = [r for r in ai + ref if r["abs_path"] in model]
        y = np.array([0 if r["label"] == "human" else 1 for r in kept])
        m = np.array([model[r["abs_path"]] for r in kept])
        p = clf.decision_function(np.stack([feats[r["abs_path"]][cols] for r in kept]))
        mean = 0.5 * m / model_val.std() + 0.5 * p / probe_val.std()
        out["references"][name] = {
            "n_ai": int(y.sum()), "n_human": int((y == 0).sum()),
            "auroc": {"model": round(roc_auc_score(y, m), 4), "probe": round(roc_auc_score(y, p), 4),
                      "mean": round(roc_auc_score(y, mean), 4)},
            "mean minus model, 95% interval": paired_bootstrap(y, mean, m)}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
