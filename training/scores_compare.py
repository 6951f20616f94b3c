"""Compare leave-one-source-out runs on the same human works: AUROC of one AI source against the human test works,
less the sources named, for several runs' scores files at once.

Two runs of different splits hold different human test works (a source held out of one run's training is in its
test split, not in the other's), so their pooled AUROCs do not compare. ``--without`` drops the named human
sources from every run's human side, and the report says how many human works each run kept (splits of one dataset
with one salt put the same works of a source in test whenever no run held that source out). It also gives each run's flagged share of every source at that
run's own threshold, clean.

Scores come from ``realworld_eval --scores-out`` (``make loso-*`` writes ``runs/scores/<run>.jsonl``).

``python -m mimicry.training.scores_compare runs/scores/loso-b-v6-in320-seed1.jsonl
runs/scores/loso-b-v6-in320-nonaev-portraits.jsonl --ai sd15-artist-prompts --without naev-portraits``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from mimicry.training.calibrate_study import load


def compare(run: dict, ai_source: str, without: set[str], condition: str = "clean") -> dict:
    """AUROC of ``ai_source`` against the human rows whose source is not in ``without``, and the share of every
    source's rows at or above the run's threshold under ``condition``."""
    rows, thr = run["rows"], run["threshold"]
    by_source: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if condition not in r["scores"]:
            raise ValueError(f"the scores file has no {condition!r} scores (it has {', '.join(r['scores'])})")
        by_source[(r["label"], r["source"])].append(float(r["scores"][condition]))
    ai = [s for (label, src), v in by_source.items() if label != "human" and src == ai_source for s in v]
    if not ai:
        raise ValueError(f"no AI rows of source {ai_source!r} (AI sources: "
                         f"{', '.join(sorted(src for label, src in by_source if label != 'human'))})")
    human = [s for (label, src), v in by_source.items() if label == "human" and src not in without for s in v]
    if not human:
        raise ValueError("no human rows left once the named sources are dropped")
    y = np.r_[np.ones(len(ai)), np.zeros(len(human))]
    return {
        "threshold": thr, "n_ai": len(ai), "n_human": len(human),
        "auroc": float(roc_auc_score(y, np.r_[ai, human])),
        "flagged": {f"{src} ({label})": {"n": len(v), "flagged": float(np.mean(np.asarray(v) >= thr))}
                    for (label, src), v in sorted(by_source.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scores", nargs="+", type=Path, help="scores files (realworld_eval --scores-out), one per run")
    ap.add_argument("--ai", required=True, help="the AI source to rank against the human works")
    ap.add_argument("--without", nargs="*", default=[], help="human sources left out of every run's human side")
    ap.add_argument("--condition", default="clean", help="the scores' condition (clean, jpeg75, ...)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    out = {}
    for path in args.scores:
        try:
            out[path.stem] = compare(load(path), args.ai, set(args.without), args.condition)
        except (OSError, ValueError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 2
    counts = {r["n_human"] for r in out.values()}
    for name, r in out.items():
        print(f"{name}: {args.ai} against {r['n_human']} human works"
              f"{' less ' + ', '.join(args.without) if args.without else ''}: AUROC {r['auroc']:.4f} "
              f"(threshold {r['threshold']:.3f})")
    if len(counts) > 1:
        print("note: the runs kept different numbers of human works; their AUROCs are not on the same works")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"ai": args.ai, "without": args.without, "condition": args.condition,
                                         "runs": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
