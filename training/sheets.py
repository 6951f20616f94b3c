"""Contact sheets for docs/: the tiny base model's samples, and real works beside mimicry per artist.

``python -m mimicry.training.sheets --base models/tiny-sd-clipart --dataset data/demo --out docs``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimicry.training.contact_sheet import contact_sheet
from mimicry.training.corpus import slugify
from mimicry.training.generate import read_manifest

BASE_PROMPTS = (
    "clip art of a red apple, food fruit",
    "clip art of a cat, animals",
    "clip art of a house, buildings",
    "clip art of a car, transportation",
    "clip art of a flower, plants",
    "clip art of a smiling face, people",
    "clip art of a computer, computer",
    "clip art of a flag, flags",
)


def base_sheet(base: Path, out: Path, per_prompt: int = 6, steps: int = 25, guidance: float = 5.0) -> Path:
    """One row per prompt of :data:`BASE_PROMPTS`, ``per_prompt`` seeds each."""
    import torch

    from mimicry.training.base_model import load_pipeline

    pipe = load_pipeline(base)
    rows = []
    for prompt in BASE_PROMPTS:
        gens = [torch.Generator().manual_seed(s) for s in range(per_prompt)]
        images = pipe([prompt] * per_prompt, num_inference_steps=steps, guidance_scale=guidance, generator=gens).images
        rows.append((f"{prompt} (seeds 0-{per_prompt - 1}, {steps} steps, cfg {guidance})", images))
    return contact_sheet(rows, out / "tiny_base_samples.png")


def artist_sheet(dataset: Path, artist: str, out: Path, n: int = 8) -> Path:
    """Real works (top rows) beside DreamBooth mimicry of the same artist (bottom rows)."""
    rows = read_manifest(dataset / "manifest.jsonl")
    real = [dataset / r["path"] for r in rows if r["artist"] == artist and r["label"] == "human"][: 2 * n]
    fake = [dataset / r["path"] for r in rows if r["artist"] == artist and r["label"] == "ai-mimicry"][: 2 * n]
    if not real or not fake:
        raise ValueError(f"no real or no mimicry images of {artist!r} in {dataset}/manifest.jsonl")
    sheet_rows = [(f"{artist}: real works", real[:n]), ("real (cont.)", real[n:]),
                  (f"DreamBooth mimicry of {artist}", fake[:n]), ("mimicry (cont.)", fake[n:])]
    return contact_sheet([r for r in sheet_rows if r[1]], out / f"real_vs_mimicry_{slugify(artist)}.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=None, help="base model: sheet of its samples")
    p.add_argument("--dataset", type=Path, default=None, help="dataset: real vs mimicry sheets")
    p.add_argument("--artists", nargs="*", default=None, help="default: every artist in the dataset")
    p.add_argument("--out", type=Path, default=Path("docs"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.base:
        print(base_sheet(args.base, args.out))
    if args.dataset:
        artists = args.artists or sorted({r["artist"] for r in read_manifest(args.dataset / "manifest.jsonl")})
        for a in artists:
            print(artist_sheet(args.dataset, a, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
