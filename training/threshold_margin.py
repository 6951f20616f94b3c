"""How far above its rule's threshold would a model have to flag to hold a kind of human art it never saw
at <= 1%, and what would that cost in AI images flagged? Measured on leave-one-source-out runs, and
checked across them: a margin chosen on one held-out pair is applied to the other.

Each run's per-image scores come from ``realworld_eval --scores-out`` (its test split, where one AI
source and one human source are wholly held out) beside the evaluation JSON of the same run (which
names the held-out sources). Margins are in logit units of the calibrated score, ``log(s / (1 - s))``:
a threshold ``t`` moved by ``m`` is ``sigmoid(logit(t) + m)``.

For each run: the margin it alone would have needed (the smallest that leaves <= ``--target`` of its
never-seen human kind flagged), and at the margin learnt from the *other* pair's runs (their largest
needed margin; chosen without looking at this run), the never-seen human kind, the other human test
works, the never-seen generator and the generators trained on, each as the share flagged.

``python -m mimicry.training.threshold_margin --scores runs/scores/loso-*.jsonl --json docs/eval/threshold_margin.json``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

EPS = 1e-9


def logit(s) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), EPS, 1 - EPS)
    return np.log(s) - np.log1p(-s)


def needed_margin(held_human: np.ndarray, threshold: float, target: float) -> float:
    """The smallest margin (>= 0) at which at most ``target`` of ``held_human`` (scores) reach the moved
    threshold (flagged means score >= threshold)."""
    z = np.sort(logit(held_human))[::-1]
    allowed = int(np.floor(target * len(z)))  # this many may stay flagged
    if allowed >= len(z):
        return 0.0
    # Flagged at the moved threshold T are z >= T; T just above the (allowed+1)-th highest leaves `allowed`.
    return float(max(0.0, np.nextafter(z[allowed], np.inf) - logit(threshold)))


def flagged(scores: np.ndarray, threshold: float, margin: float) -> float | None:
    if not len(scores):
        return None
    return float((logit(scores) >= logit(threshold) + margin).mean())


def load_run(scores_path: Path, condition: str = "clean") -> dict:
    """One run: its threshold, held-out sources and the scores of each group of test images."""
    meta = json.loads(scores_path.with_suffix(".json").read_text())
    held = set(meta.get("held_out", []))
    groups: dict[str, list[float]] = defaultdict(list)
    threshold = None
    for line in scores_path.read_text().splitlines():
        r = json.loads(line)
        threshold = r["threshold"]
        ai = r["label"] == "ai-mimicry"
        key = ("held_ai" if ai else "held_human") if r["source"] in held else ("seen_ai" if ai else "seen_human")
        groups[key].append(r["scores"][condition])
    return {"threshold": threshold, "held_out": sorted(held), "pair": tuple(sorted(held)),
            **{k: np.asarray(v) for k, v in groups.items()}}


def study(runs: dict[str, dict], target: float) -> dict:
    out = {}
    for name, r in runs.items():
        need = needed_margin(r["held_human"], r["threshold"], target)
        others = [needed_margin(o["held_human"], o["threshold"], target)
                  for n, o in runs.items() if o["pair"] != r["pair"]]
        entry = {"held_out": r["held_out"], "threshold": r["threshold"], "needed_margin": round(need, 3),
                 "needed_threshold": float(1 / (1 + np.exp(-(logit(r["threshold"]) + need)))),
                 "at_rule": {k: flagged(r[k], r["threshold"], 0.0) for k in GROUPS}}
        if others:
            m = max(others)
            entry["margin_from_other_pairs"] = round(m, 3)
            entry["at_margin_from_other_pairs"] = {k: flagged(r[k], r["threshold"], m) for k in GROUPS}
        entry["at_needed_margin"] = {k: flagged(r[k], r["threshold"], need) for k in GROUPS}
        out[name] = entry
    return out


GROUPS = ("held_human", "seen_human", "held_ai", "seen_ai")
LABELS = {"held_human": "never-seen human kind", "seen_human": "other human test works",
          "held_ai": "never-seen generator", "seen_ai": "generators trained on"}


def table(result: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    rows = ["| run | rule threshold | margin needed (its own) | margin from the other pair | "
            + " | ".join(f"{LABELS[g]} flagged: rule / other pair's margin" for g in GROUPS) + " |",
            "|" + "---|" * (4 + len(GROUPS))]
    for name, e in result.items():
        alt = e.get("at_margin_from_other_pairs", {})
        rows.append(f"| {name} | {e['threshold']:.3f} | {e['needed_margin']:.2f} | "
                    f"{e.get('margin_from_other_pairs', '-')} | "
                    + " | ".join(f"{pct(e['at_rule'][g])} / {pct(alt.get(g))}" for g in GROUPS) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", type=Path, nargs="+", required=True, help="realworld_eval --scores-out files")
    p.add_argument("--condition", default="clean")
    p.add_argument("--target", type=float, default=0.01, help="share of the never-seen human kind flagged")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    runs = {path.stem: load_run(path, args.condition) for path in args.scores}
    result = study(runs, args.target)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps({"condition": args.condition, "target": args.target, "runs": result},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
