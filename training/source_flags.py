"""How often a detector flags the works of each source in provenance files, as published (no normalisation).

The question a platform asks before trusting a threshold on its own uploads: of these human works (a kind the
model may never have seen), how many come back ``ai-mimicry`` or ``uncertain``? Rows are grouped by their
``source`` field; the files are read as ``mimicry.training.external.read_provenance`` reads them (a row's
``file`` relative to its provenance file's folder).

``python -m mimicry.training.source_flags --model models/default --provenance data/new_art.jsonl --json out.json``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from mimicry.detector import Detector
from mimicry.training.external import read_provenance


def tally(rows: list[dict], verdicts) -> dict:
    """Per source: n, the share labelled ai-mimicry and uncertain, mean score, errors, the top-scoring files."""
    by = defaultdict(list)
    for row, v in zip(rows, verdicts):
        by[row.get("source", "?")].append((row, v))
    out = {}
    for source, pairs in sorted(by.items()):
        scored = [(r, v) for r, v in pairs if v.error is None]
        labels = [v.label for _, v in scored]
        n = len(scored)
        out[source] = {
            "n": n, "errors": len(pairs) - n,
            "flagged": labels.count("ai-mimicry") / n if n else None,
            "uncertain": labels.count("uncertain") / n if n else None,
            "mean_score": sum(v.score for _, v in scored) / n if n else None,
            "top": [(Path(r["abs_path"]).name, round(v.score, 4))
                    for r, v in sorted(scored, key=lambda rv: -rv[1].score)[:5]],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a model folder or a bundled model's name")
    p.add_argument("--provenance", type=Path, action="append", required=True, help="provenance JSONL (repeatable)")
    p.add_argument("--sources", nargs="*", default=None, help="only these sources")
    p.add_argument("--json", type=Path, default=None, help="write the tally here")
    args = p.parse_args(argv)
    rows = [r for path in args.provenance for r in read_provenance(path)
            if args.sources is None or r["source"] in args.sources]
    if not rows:
        print("no rows", file=sys.stderr)
        return 2
    detector = Detector.from_dir(args.model)
    verdicts = list(detector.stream([r["abs_path"] for r in rows]))
    result = {"model": f"{detector.name} {detector.version}", "threshold": detector.bundle.thresholds.ai_mimicry,
              "sources": tally(rows, verdicts)}
    for source, t in result["sources"].items():
        if t["n"]:
            print(f"{source:24s} n={t['n']:4d}  flagged {t['flagged']:6.1%}  uncertain {t['uncertain']:6.1%}  "
                  f"mean score {t['mean_score']:.3f}  errors {t['errors']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
