"""Which threshold rule keeps human art of a kind the model never saw out of the ``ai-mimicry`` verdict?

The export sets a model's threshold on its validation split: at most 1% of the val human works flagged, each
large source held to that bound on its own (``--threshold-rule per-source``). A 1% bound on a few hundred works is
set by the third or fourth highest human score, so it moves a lot between runs (0.72 to 0.98 over the runs of
one recipe), and a kind of human art that val does not hold can sit anywhere above it. Leave-one-source-out
runs hold one human source (museum paintings, picture books) wholly out of training and of val, so they can
tell how each rule treats a kind never seen, and what it costs in AI images flagged.

For each run this takes the model's val scores and test scores (``realworld_eval --split val|test
--scores-out``, one line per work: source, label and the calibrated score clean and under each perturbation)
and measures, at the threshold each rule gives:

- ``card``: the model's own threshold (the rule it was exported with);
- ``keep-val-tpr X``: the card's threshold raised, never lowered, as far as still flags ``X`` of the clean val
  mimicry (:func:`mimicry.detector.calibration.keep_tpr_threshold`; export ``--keep-val-tpr X``). Val is split
  by artist, so ``X`` is about the share of a new artist's mimicry the rule keeps flagged;
- ``pooled Y``: at most ``Y`` of all val human works flagged, clean and under every condition counted as more
  works (:func:`mimicry.detector.calibration.threshold_at_fpr`), with no per-source bound.

The figures: the share of human test works flagged, for the held-out human sources and for the others (clean
and under each condition), and the share of AI test images flagged, for the held-out AI sources and for the
others (clean). Sources named by ``--skip-source`` (the project's own demo clip art) are left out of the
figures, not of the rules: the export's rule sees them too.

``python -m mimicry.training.threshold_study --run loso-b-v6-in320-seed1 --run loso-a-v6-in320-seed1 --json
docs/eval/threshold-study.json`` (scores in ``runs/scores/val/<run>.jsonl`` and ``runs/scores/<run>.jsonl``,
held-out sources from ``docs/eval/<run>.json``)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mimicry.detector.calibration import keep_tpr_threshold, threshold_at_fpr

CONDITIONS = ("clean", "jpeg75", "resize0.5")


def read_scores(path: Path) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not rows:
        raise ValueError(f"{path} holds no scores")
    if len({r["model"] for r in rows}) != 1:
        raise ValueError(f"{path} holds more than one model's scores; give one file per model")
    return rows


def held_out(run: str, eval_dirs: list[Path]) -> list[str]:
    """The sources a run held out of training, from its evaluation JSON (none for a run on the full data)."""
    for d in eval_dirs:
        p = d / f"{run}.json"
        if p.is_file():
            return sorted(json.loads(p.read_text()).get("held_out", []))
    return []


def scores(rows: list[dict], condition: str) -> np.ndarray:
    missing = [r["source"] for r in rows if condition not in r["scores"]]
    if missing:
        raise ValueError(f"no {condition} score for {len(missing)} rows (first of source {missing[0]!r})")
    return np.array([r["scores"][condition] for r in rows], dtype=np.float64)


def rules(val: list[dict], card_threshold: float, *, keeps: tuple[float, ...], pooled: tuple[float, ...],
          conditions: tuple[str, ...]) -> dict[str, float]:
    """Each rule's threshold from one run's val scores."""
    human = [r for r in val if r["label"] == "human"]
    mimicry = [r for r in val if r["label"] != "human"]
    out = {"card": float(card_threshold)}
    for keep in keeps:
        out[f"keep-val-tpr {keep:g}"] = max(float(card_threshold), keep_tpr_threshold(scores(mimicry, "clean"), keep))
    every = np.concatenate([scores(human, c) for c in conditions])
    for fpr in pooled:
        out[f"pooled {fpr:g}"] = threshold_at_fpr(every, fpr)
    return out


def outcome(test: list[dict], held: set[str], threshold: float, conditions: tuple[str, ...],
            skip: set[str]) -> dict:
    """Shares flagged at ``threshold``: human test works (held-out sources / the others) under each condition,
    AI test images (held-out / the others) clean. Each entry: ``{"n", "flagged"}``."""
    out = {}
    for label, name, conds in (("human", "human", conditions), ("ai-mimicry", "ai", ("clean",))):
        for side, is_held in (("held_out", True), ("trained_on", False)):
            rows = [r for r in test if (r["label"] == "human") == (label == "human")
                    and r["source"] not in skip and (r["source"] in held) == is_held]
            if not rows:
                continue
            out[f"{name} {side}"] = {c: {"n": len(rows), "flagged": float((scores(rows, c) >= threshold).mean())}
                                     for c in conds}
    return out


def study_run(val: list[dict], test: list[dict], held: list[str], *, keeps=(0.95, 0.90, 0.85),
              pooled=(0.01, 0.005), conditions=CONDITIONS, skip=("demo-clipart",)) -> dict:
    card = {r["threshold"] for r in test} | {r["threshold"] for r in val}
    if len(card) != 1:
        raise ValueError(f"the val and test scores carry {len(card)} thresholds: not one model's files")
    thresholds = rules(val, card.pop(), keeps=tuple(keeps), pooled=tuple(pooled), conditions=tuple(conditions))
    return {"held_out": held, "rules": {name: {"threshold": t, **outcome(test, set(held), t, tuple(conditions),
                                                                           set(skip))}
                                        for name, t in thresholds.items()}}


def summary(runs: dict[str, dict]) -> dict:
    """Per rule, over the runs (clean): the median and the highest share of held-out human works flagged, the
    median and the lowest share of the trained-on AI sources' test images flagged (artists never trained on),
    and the median share of the held-out AI sources' images flagged (a generator never trained on)."""
    names = next(iter(runs.values()))["rules"].keys()
    out = {}
    for name in names:
        got = [r["rules"][name] for r in runs.values()]
        held = [g["human held_out"]["clean"]["flagged"] for g in got if "human held_out" in g]
        ai = [g["ai trained_on"]["clean"]["flagged"] for g in got if "ai trained_on" in g]
        new = [g["ai held_out"]["clean"]["flagged"] for g in got if "ai held_out" in g]
        out[name] = {"runs": len(got),
                     "held_out_human_flagged_median": float(np.median(held)) if held else None,
                     "held_out_human_flagged_max": float(max(held)) if held else None,
                     "trained_on_ai_flagged_median": float(np.median(ai)) if ai else None,
                     "trained_on_ai_flagged_min": float(min(ai)) if ai else None,
                     "held_out_ai_flagged_median": float(np.median(new)) if new else None}
    return out


def table(result: dict) -> list[str]:
    lines = []
    for run, r in result["runs"].items():
        lines.append(f"{run} (held out: {', '.join(r['held_out']) or 'none'})")
        for name, g in r["rules"].items():
            parts = [f"{k}: " + "/".join(f"{v['flagged']:.1%}" for v in g[k].values())
                     for k in ("human held_out", "human trained_on", "ai held_out", "ai trained_on") if k in g]
            lines.append(f"  {name:18s} {g['threshold']:.4f}  " + "  ".join(parts))
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME",
                   help="a run whose scores are in VAL_DIR/NAME.jsonl and TEST_DIR/NAME.jsonl (repeatable)")
    p.add_argument("--val-dir", type=Path, default=Path("runs/scores/val"))
    p.add_argument("--test-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--eval-dir", type=Path, action="append", default=None,
                   help="where NAME.json (the run's evaluation, for its held-out sources) is looked for "
                        "(repeatable; default docs/eval)")
    p.add_argument("--keep", type=float, nargs="+", default=[0.95, 0.90, 0.85])
    p.add_argument("--pooled", type=float, nargs="+", default=[0.01, 0.005])
    p.add_argument("--condition", nargs="+", default=list(CONDITIONS))
    p.add_argument("--skip-source", nargs="*", default=["demo-clipart"])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if "clean" not in args.condition:
        p.error("--condition must include clean")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    eval_dirs = args.eval_dir or [Path("docs/eval")]
    runs = {}
    for name in args.run:
        runs[name] = study_run(read_scores(args.val_dir / f"{name}.jsonl"), read_scores(args.test_dir / f"{name}.jsonl"),
                               held_out(name, eval_dirs), keeps=args.keep, pooled=args.pooled,
                               conditions=args.condition, skip=args.skip_source)
    result = {"conditions": args.condition, "skipped_sources": args.skip_source, "runs": runs,
              "summary": summary(runs),
              "how": "figures: shares flagged; human under " + "/".join(args.condition) + ", AI clean"}
    print("\n".join(table(result)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
