"""Copy a few test-split images into ``examples/``: real works and mimicry the detector never saw.

The test split holds artists (and so generation runs) kept out of training and of calibration, so
these are fair examples for the README's main command. ``examples/CREDITS.jsonl`` keeps each
file's provenance: author, title and licence of real works; run, prompt and seed of mimicry.

``python -m mimicry.training.make_examples --dataset data/demo --out examples --n 6``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mimicry.training.generate import read_manifest

KEEP = ("label", "artist", "split", "title", "category", "source", "license", "run_id", "method", "prompt", "seed",
        "scheduler", "steps", "guidance", "sha256")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=Path("data/demo"))
    p.add_argument("--out", type=Path, default=Path("examples"))
    p.add_argument("--n", type=int, default=6, help="images of each label")
    p.add_argument("--split", default="test")
    args = p.parse_args(argv)
    rows = [r for r in read_manifest(args.dataset / "manifest.jsonl") if r["split"] == args.split]
    if not rows:
        print(f"error: no {args.split} rows in {args.dataset}/manifest.jsonl", file=sys.stderr)
        return 2
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    credits = []
    for label, prefix in (("human", "real"), ("ai-mimicry", "mimicry")):
        mine = [r for r in rows if r["label"] == label]
        step = max(1, len(mine) // args.n)  # spread over the artist's works, not the first few
        for i, r in enumerate(mine[::step][: args.n]):
            name = f"{prefix}_{i:02d}.png"
            shutil.copyfile(args.dataset / r["path"], args.out / name)
            credits.append({"file": name, **{k: r[k] for k in KEEP if k in r}})
    with open(args.out / "CREDITS.jsonl", "w") as f:
        f.writelines(json.dumps(c) + "\n" for c in credits)
    print(f"wrote {len(credits)} examples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
