"""What does ``mimicry calibrate`` buy a platform whose users upload a kind of human art the model never saw?

Measured on leave-one-source-out runs, where one human source (museum paintings, picture books) is wholly
held out of training and calibration. A platform that knows some of its uploads of that kind are human gives
``k`` of them to ``mimicry calibrate``: the threshold becomes the higher of the model's own and the lowest that
flags at most ``--max-fpr`` of those ``k`` works (clean, and under each ``--under`` condition the scores file
holds), exactly the command's rule (:func:`mimicry.detector.calibration.threshold_at_fpr`). The works are drawn
by group (a book, a painter), so no group is on both sides, and the figures are measured on the rest of the
kind: the share still flagged, and what the higher threshold costs in AI images flagged (the generator never
seen and those trained on) and in other human works. Each ``k`` is drawn ``--draws`` times; the report gives
the median and the 5th and 95th percentiles over draws.

Scores come from ``realworld_eval --scores-out`` (one line per test image and model; ``make loso-*`` writes
``runs/scores/<run>.jsonl``); the held-out sources from the run's evaluation JSON (beside the scores file, or
``docs/eval/<run>.json``).

``python -m mimicry.training.calibrate_study --scores runs/scores/loso-a-v6-in320-seed1.jsonl --json
docs/eval/calibrate_study.json``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from mimicry.detector.calibration import threshold_at_fpr


def load(scores_path: Path, eval_json: Path | None = None) -> dict:
    """One run: threshold, held-out sources, and per test image its source, label, group and scores."""
    meta_path = eval_json or next((p for p in (scores_path.with_suffix(".json"),
                                               Path("docs/eval") / f"{scores_path.stem}.json") if p.is_file()), None)
    if meta_path is None:
        raise FileNotFoundError(f"no evaluation JSON for {scores_path} (beside it, or docs/eval/{scores_path.stem}.json)")
    held = set(json.loads(meta_path.read_text()).get("held_out", []))
    rows = [json.loads(x) for x in scores_path.read_text().splitlines() if x.strip()]
    if not rows:
        raise ValueError(f"{scores_path} holds no scores")
    models = {r["model"] for r in rows}
    if len(models) != 1:
        raise ValueError(f"{scores_path} holds {len(models)} models' scores; give one file per model")
    return {"threshold": rows[0]["threshold"], "held_out": sorted(held), "rows": rows}


def study(run: dict, ks: list[int], *, draws: int = 200, max_fpr: float = 0.01, under: tuple[str, ...] = (),
          measure: tuple[str, ...] = ("clean",), seed: int = 0, at: tuple[float, ...] = ()) -> dict:
    """For each held-out human source of ``run`` and each ``k``: the figures of the module's doc; and with
    ``at``, the same figures over the whole kind at each of those fixed thresholds (another rule's, say)."""
    rng = np.random.default_rng(seed)
    rows, thr0 = run["rows"], run["threshold"]
    held = set(run["held_out"])
    conditions = ("clean",) + tuple(under)
    missing = [c for c in conditions + measure if c not in rows[0]["scores"]]
    if missing:
        raise ValueError(f"the scores file has no {', '.join(missing)} scores (it has {', '.join(rows[0]['scores'])})")

    def scores(rs) -> dict[str, np.ndarray]:  # condition -> the rows' scores, read once
        return {c: np.array([r["scores"][c] for r in rs], dtype=np.float64) for c in set(conditions + measure)}

    ai_held = scores([r for r in rows if r["label"] != "human" and r["source"] in held])
    ai_seen = scores([r for r in rows if r["label"] != "human" and r["source"] not in held])
    out = {}
    for source in sorted(s for s in held if any(r["source"] == s and r["label"] == "human" for r in rows)):
        kind_rows = [r for r in rows if r["source"] == source and r["label"] == "human"]
        kind = scores(kind_rows)
        others = scores([r for r in rows if r["label"] == "human" and r["source"] != source])
        by_group = defaultdict(list)
        for i, r in enumerate(kind_rows):
            by_group[r.get("group") or f"work {i}"].append(i)
        groups = list(by_group)

        def figures(t: float, rest: list[int]) -> dict:
            f = {f"kind_{c}": float(np.mean(kind[c][rest] >= t)) for c in measure}
            f.update({f"{name}_{c}": float(np.mean(s[c] >= t)) if len(s[c]) else None
                      for name, s in (("ai_never_seen", ai_held), ("ai_trained_on", ai_seen), ("other_human", others))
                      for c in measure})
            return f

        everything = list(range(len(kind_rows)))
        entry = {"works": len(kind_rows), "groups": len(groups), "model_threshold": thr0,
                 "before": figures(thr0, everything), "at": {repr(t): figures(t, everything) for t in at}, "by_k": {}}
        for k in ks:
            if k >= len(kind_rows):
                continue
            got = defaultdict(list)
            for _ in range(draws):
                order = rng.permutation(len(groups))
                calib: list[int] = []
                for g in order:
                    if len(calib) >= k:
                        break
                    calib += by_group[groups[g]]
                chosen = set(calib)
                rest = [i for i in everything if i not in chosen]
                if not rest:
                    continue
                own = threshold_at_fpr(np.concatenate([kind[c][calib] for c in conditions]), max_fpr)
                t = max(thr0, own)
                got["threshold"].append(t)
                got["works_given"].append(len(calib))
                for name, v in figures(t, rest).items():
                    if v is not None:
                        got[name].append(v)
            entry["by_k"][str(k)] = {name: {"median": float(np.median(v)), "p5": float(np.percentile(v, 5)),
                                            "p95": float(np.percentile(v, 95))} for name, v in got.items()}
            entry["by_k"][str(k)]["draws"] = len(got["threshold"])
        out[source] = entry
    return out


def table(name: str, result: dict, measure: tuple[str, ...]) -> str:
    def pct(d, key):
        if d.get(key) is None:
            return "-"
        v = d[key]
        return f"{100 * v:.1f}%" if not isinstance(v, dict) else \
            f"{100 * v['median']:.1f}% ({100 * v['p5']:.1f}-{100 * v['p95']:.1f})"

    def row(given: str, threshold: str, d: dict, c: str) -> str:
        return (f"| {given} | {threshold} | "
                + " | ".join(pct(d, f"{g}_{c}") for g in ("kind", "ai_never_seen", "ai_trained_on", "other_human"))
                + " |")

    lines = []
    for source, e in result.items():
        for c in measure:
            lines += [f"**{name}**, never-seen kind `{source}` ({e['works']} works, {e['groups']} groups), {c}; "
                      f"model threshold {e['model_threshold']:.4f}", "",
                      "| works given | threshold | rest of the kind flagged | never-seen generator flagged | "
                      "generators trained on flagged | other human works flagged |", "|---|---|---|---|---|---|",
                      row("none", f"{e['model_threshold']:.4f}", e["before"], c)]
            lines += [row(f"none, at {float(t):.4f}", f"{float(t):.4f}", d, c) for t, d in e.get("at", {}).items()]
            lines += [row(k, f"{d['threshold']['median']:.4f} ({d['threshold']['p5']:.4f}-{d['threshold']['p95']:.4f})", d, c)
                      for k, d in e["by_k"].items()]
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", type=Path, nargs="+", required=True, help="realworld_eval --scores-out files")
    p.add_argument("--k", type=int, nargs="+", default=[10, 25, 50, 100], help="works of the kind given")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--max-fpr", type=float, default=0.01)
    p.add_argument("--under", nargs="*", default=[], help="conditions the bound also holds under (e.g. jpeg75)")
    p.add_argument("--measure", nargs="*", default=["clean"], help="conditions the figures are measured under")
    p.add_argument("--at", type=float, nargs="*", default=[], help="also report the figures at these thresholds")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    report = {"k": args.k, "at": args.at, "draws": args.draws, "max_fpr": args.max_fpr, "under": args.under, "runs": {}}
    for path in args.scores:
        result = study(load(path), args.k, draws=args.draws, max_fpr=args.max_fpr, under=tuple(args.under),
                       measure=tuple(args.measure), at=tuple(args.at))
        report["runs"][path.stem] = result
        print(table(path.stem, result, tuple(args.measure)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
