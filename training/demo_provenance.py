"""A provenance file for the demo dataset (``make dataset``), so ``mimicry.training.external`` can mix it in.

Real works (openclipart, 128 px) become human rows, the DreamBooth mimicry of the project's tiny base AI
rows, each with its artist, so an artist's works and their mimicry share one group and one split. Reads
``real_manifest.jsonl`` and ``generated_manifest.jsonl`` of a demo dataset folder; a dataset still being built
gives the artists finished so far.

``python -m mimicry.training.demo_provenance --dataset data/demo --out data/demo_provenance.jsonl``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows(dataset: Path) -> list[dict]:
    out = []
    for name in ("real_manifest.jsonl", "generated_manifest.jsonl"):
        path = dataset / name
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            image = (dataset / r["path"]).resolve()
            if not image.is_file():
                continue
            ai = r["label"] == "ai-mimicry"
            out.append({
                "file": str(image), "label": "ai" if ai else "human", "source": "demo-clipart",
                "artist": r["artist"],
                "generator": (f"DreamBooth ({r['method']}) of models/tiny-sd-clipart, run {r['run_id']}, "
                              f"{r['scheduler']} {r['steps']} steps") if ai else "",
                "licence": "made by this project's pipeline" if ai else r.get("license", "public domain"),
                "repo": "mimicry-detect demo dataset" if ai else "debian:openclipart-png",
                "commit": r.get("generation_id", "") if ai else "",
                "path_in_repo": r["path"] if ai else r.get("source", ""),
                "note": "the demo's toy generator, 128 px" if ai else "demo real work, normalised to 128 px",
            })
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    got = rows(args.dataset)
    if not got:
        print(f"error: no demo rows under {args.dataset} (run `make dataset` first)", file=sys.stderr)
        return 2
    args.out.write_text("".join(json.dumps(r) + "\n" for r in got))
    by = {}
    for r in got:
        by[(r["artist"], r["label"])] = by.get((r["artist"], r["label"]), 0) + 1
    print(json.dumps({f"{a}/{lab}": n for (a, lab), n in sorted(by.items())}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
