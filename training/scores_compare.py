"""Compare leave-one-source-out runs on the same human works: AUROC of one AI source against the human test works,
less the sources named, for several runs' scores files at once.

Two runs of different splits hold different human test works (a source held out of one run's training is in its
test split, not in the other's), so their pooled AUROCs do not compare. ``--without`` drops the named human
sources from every run's human side, and the report says how many human works each run kept (splits of one dataset
with one salt put the same works of a source in test whenever no run held that source out). It also gives each run's flagged share of every source at that
run's own threshold, clean.

When every run kept the same works, each later run's AUROC difference to the first comes with a 95% interval from a
paired bootstrap over the test works' groups (an artist's contact-sheet cells, a book's spreads, a folder of
portraits are drawn together, the AI and human groups apart; every run is scored on the same draw). The interval is
what the test works alone leave open; a second training seed moves a run too, which it does not cover.

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
    kept = _kept(run, ai_source, without, condition)
    y = np.array([ai for _, ai, _ in kept])
    if not y.any():
        raise ValueError(f"no AI rows of source {ai_source!r} (AI sources: "
                         f"{', '.join(sorted(src for label, src in by_source if label != 'human'))})")
    if y.all():
        raise ValueError("no human rows left once the named sources are dropped")
    return {
        "threshold": thr, "n_ai": int(y.sum()), "n_human": int(len(y) - y.sum()),
        "auroc": float(roc_auc_score(y, [score for _, _, score in kept])),
        "flagged": {f"{src} ({label})": {"n": len(v), "flagged": float(np.mean(np.asarray(v) >= thr))}
                    for (label, src), v in sorted(by_source.items())},
    }


def _kept(run: dict, ai_source: str, without: set[str], condition: str) -> list[tuple[tuple, int, float]]:
    """The rows :func:`compare` ranks, as (group key, 1 for AI, score); rows without a group are their own."""
    out, seen = [], defaultdict(int)
    for r in run["rows"]:
        ai = r["label"] != "human"
        if (ai and r["source"] != ai_source) or (not ai and r["source"] in without):
            continue
        key = (r["label"], r["source"], r.get("group"))
        if r.get("group") is None:
            seen[key] += 1
            key += (seen[key],)
        out.append((key, int(ai), float(r["scores"][condition])))
    return out


def bootstrap(runs: list[dict], ai_source: str, without: set[str], condition: str = "clean", *,
              draws: int = 2000, seed: int = 0) -> list[dict] | None:
    """Each run after the first: its AUROC minus the first's, with the 2.5th and 97.5th percentiles of that
    difference over ``draws`` paired bootstrap draws of the test groups (stratified by class), and the share of
    draws in which it is above zero. None when the runs did not keep the same groups with the same numbers of rows
    (then there is nothing to pair)."""
    kept = [_kept(run, ai_source, without, condition) for run in runs]
    sizes = [defaultdict(int) for _ in kept]
    for size, rows in zip(sizes, kept):
        for key, _, _ in rows:
            size[key] += 1
    if any(size != sizes[0] for size in sizes[1:]):
        return None
    groups = sorted(sizes[0], key=repr)
    index = {g: i for i, g in enumerate(groups)}
    strata = [np.array([i for i, g in enumerate(groups) if (g[0] != "human") == ai]) for ai in (True, False)]
    arrays = [(np.array([index[k] for k, _, _ in rows]), np.array([y for _, y, _ in rows]),
               np.array([s for _, _, s in rows])) for rows in kept]
    rng = np.random.default_rng(seed)
    diffs = np.empty((draws, len(runs) - 1))
    for d in range(draws):
        weight = np.zeros(len(groups))
        for stratum in strata:
            weight[stratum] = rng.multinomial(len(stratum), np.full(len(stratum), 1 / len(stratum)))
        aurocs = [roc_auc_score(y, s, sample_weight=weight[g]) for g, y, s in arrays]
        diffs[d] = np.array(aurocs[1:]) - aurocs[0]
    point = [roc_auc_score(y, s) for _, y, s in arrays]
    return [{"difference": point[i + 1] - point[0],
             "interval95": [float(np.percentile(diffs[:, i], 2.5)), float(np.percentile(diffs[:, i], 97.5))],
             "share_above_zero": float(np.mean(diffs[:, i] > 0)), "groups": len(groups), "draws": draws}
            for i in range(len(runs) - 1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scores", nargs="+", type=Path, help="scores files (realworld_eval --scores-out), one per run")
    ap.add_argument("--ai", required=True, help="the AI source to rank against the human works")
    ap.add_argument("--without", nargs="*", default=[], help="human sources left out of every run's human side")
    ap.add_argument("--condition", default="clean", help="the scores' condition (clean, jpeg75, ...)")
    ap.add_argument("--draws", type=int, default=2000,
                    help="paired bootstrap draws for the differences to the first run (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    if args.draws < 0:
        ap.error(f"--draws must be 0 or more, not {args.draws}")
    out, loaded = {}, []
    for path in args.scores:
        try:
            loaded.append(load(path))
            out[path.stem] = compare(loaded[-1], args.ai, set(args.without), args.condition)
        except (OSError, ValueError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 2
    paired = (bootstrap(loaded, args.ai, set(args.without), args.condition, draws=args.draws, seed=args.seed)
              if len(loaded) > 1 and args.draws > 0 else None)
    first = next(iter(out))
    counts = {r["n_human"] for r in out.values()}
    for name, r in out.items():
        print(f"{name}: {args.ai} against {r['n_human']} human works"
              f"{' less ' + ', '.join(args.without) if args.without else ''}: AUROC {r['auroc']:.4f} "
              f"(threshold {r['threshold']:.3f})")
    for name, p in zip(list(out)[1:], paired or []):
        out[name]["paired_bootstrap"] = {"against": first, **p}
        lo, hi = p["interval95"]
        print(f"{name} - {first}: {p['difference']:+.4f} (95% of {p['draws']} paired draws of {p['groups']} test "
              f"groups: {lo:+.4f} to {hi:+.4f}; above zero in {p['share_above_zero']:.1%})")
    if len(counts) > 1:
        print("note: the runs kept different numbers of human works; their AUROCs are not on the same works")
    elif len(loaded) > 1 and args.draws > 0 and paired is None:
        print("note: the runs' test works differ group by group; no paired interval")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"ai": args.ai, "without": args.without, "condition": args.condition,
                                         "runs": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
