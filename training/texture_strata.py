"""Where a detector ranks an AI source well and where not, by how busy the pictures are.

For each run (a ``realworld_eval --scores-out`` file and the manifest it was scored on), the AI source's test
images and the human test works (less ``--without``) are cut into ``--strata`` equal parts by texture energy
(:func:`mimicry.training.baselines.texture_energy`: the mean absolute Laplacian of the grey picture at the
detector's input size), at the quantiles of the first run's images, and each part gets its own AUROC; with the
Spearman correlation of the score with the energy within each class. A detector that reads generator traces ranks
alike in every part; one that leans on busyness (or its absence) falls in one of them. The energy alone is
reported as a baseline too.

``python -m mimicry.training.texture_strata runs/scores/loso-b-v6-in320-seed1.jsonl
data/realworld-loso-b-v6/manifest.jsonl runs/scores/loso-b-v6-in320-nogcompris-photos-seed1.jsonl
data/realworld-loso-b-v6-nogcompris-photos/manifest.jsonl --ai sd15-artist-prompts --without naev-portraits
gcompris-photos gcompris-drawings``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from mimicry.training.baselines import texture_energy
from mimicry.training.realworld_eval import load_published, published_items


def run_rows(scores: Path, manifest: Path, energies: dict, size: int) -> list[dict]:
    """The scores file's rows, each with the texture energy of its published image (cached in ``energies``)."""
    rows = [json.loads(x) for x in scores.read_text().splitlines() if x.strip()]
    items = published_items(manifest, "test")
    if len(items) != len(rows):
        raise ValueError(f"{scores} holds {len(rows)} rows, the test split of {manifest} {len(items)} images: "
                         "not scored on this manifest")
    cache: dict = {}
    for row, item in zip(rows, items):
        if (row["source"], row["label"], row.get("group")) != (item["source"], item["label"], item.get("group")):
            raise ValueError(f"{scores} and {manifest} disagree on an image ({row['source']}, {row.get('group')})")
        key = (item["origin_path"], tuple(item["cell"]) if item.get("cell") else None)
        if key not in energies:
            energies[key] = texture_energy(load_published(item, cache), size)
        row["energy"] = energies[key]
    return rows


def kept_rows(rows: list[dict], ai_source: str, without: set[str]) -> list[dict]:
    """The rows ranked: the AI source's, and the human works of every source not in ``without``."""
    return [r for r in rows if (r["label"] != "human" and r["source"] == ai_source)
            or (r["label"] == "human" and r["source"] not in without)]


def strata(rows: list[dict], ai_source: str, without: set[str], edges: np.ndarray, condition: str = "clean") -> dict:
    kept = kept_rows(rows, ai_source, without)
    y = np.array([r["label"] != "human" for r in kept])
    s = np.array([float(r["scores"][condition]) for r in kept])
    e = np.array([r["energy"] for r in kept])
    part = np.searchsorted(edges, e, side="right")
    out = {"auroc": float(roc_auc_score(y, s)), "energy_alone_auroc": float(roc_auc_score(y, e)),
           "spearman_ai": float(spearmanr(s[y], e[y])[0]), "spearman_human": float(spearmanr(s[~y], e[~y])[0]),
           "strata": []}
    for k in range(len(edges) + 1):
        m = part == k
        both = y[m].any() and (~y[m]).any()
        out["strata"].append({"n_ai": int(y[m].sum()), "n_human": int((~y[m]).sum()),
                              "energy_median": float(np.median(e[m])) if m.any() else None,
                              "auroc": float(roc_auc_score(y[m], s[m])) if both else None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="pairs: a scores file, then the manifest it was scored on")
    ap.add_argument("--ai", required=True, help="the AI source to rank against the human works")
    ap.add_argument("--without", nargs="*", default=[], help="human sources left out of every run's human side")
    ap.add_argument("--strata", type=int, default=3, help="equal parts by texture energy (default 3)")
    ap.add_argument("--size", type=int, default=320, help="the side the energy is measured at (the model's input)")
    ap.add_argument("--condition", default="clean")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if len(args.runs) % 2:
        ap.error("give each scores file with its manifest: SCORES MANIFEST [SCORES MANIFEST ...]")
    if args.strata < 1:
        ap.error("--strata must be >= 1")
    try:
        energies: dict = {}
        runs = [(Path(a), run_rows(Path(a), Path(b), energies, args.size))
                for a, b in zip(args.runs[::2], args.runs[1::2])]
        first = [r["energy"] for r in kept_rows(runs[0][1], args.ai, set(args.without))]
        edges = np.quantile(first, np.linspace(0, 1, args.strata + 1)[1:-1])
        result = {path.stem: strata(rows, args.ai, set(args.without), edges, args.condition) for path, rows in runs}
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, r in result.items():
        parts = ", ".join(f"{p['auroc']:.3f} ({p['n_ai']} + {p['n_human']})" if p["auroc"] is not None
                          else f"- ({p['n_ai']} + {p['n_human']})" for p in r["strata"])
        print(f"{name}: {args.ai} AUROC {r['auroc']:.3f}; by texture energy, flat to busy: {parts}; "
              f"score-energy Spearman AI {r['spearman_ai']:+.2f}, human {r['spearman_human']:+.2f}; "
              f"energy alone {r['energy_alone_auroc']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"ai": args.ai, "without": sorted(args.without), "condition": args.condition,
                                         "edges": edges.tolist(), "runs": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
