"""Reconstruction twins: human works passed through a base model's VAE, added as AI samples.

The idea behind aligned-dataset and inpainting-based training (B-Free, DRCT): a latent diffusion model's
every output goes through its VAE decoder, so an image encoded and decoded by that VAE carries the
decoder's traces while its content, palette and composition stay the human work's. A detector trained on
(work, twin) pairs cannot lean on content; it has to find the decoder. DreamBooth keeps the VAE frozen,
so with a real Stable Diffusion base the twins teach exactly the fingerprint that every DreamBooth
fine-tune of that base leaves, without sampling a single image.

Reads a dataset made by ``mimicry.training.external`` and writes a new one beside it: the same rows, plus
one twin per human row of the chosen splits (label ``ai-mimicry``, source ``vae-twins``, the human work's
group, so a twin always lands in its original's split). The base is a local diffusers folder (a real
Stable Diffusion checkpoint, or ``models/tiny-sd-clipart``, whose VAE is blurry: twins from it taught "blurry
means AI" in a trial, so the default detector is not trained with them).

``python -m mimicry.training.twins --dataset data/realworld --base /models/sd15 --out data/realworld-twins``
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help="a mimicry.training.external dataset folder")
    p.add_argument("--base", type=Path, required=True, help="a local diffusers model folder with a vae/ subfolder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--splits", nargs="+", default=["train", "val"], help="splits whose human rows get twins")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = p.parse_args(argv)
    if args.out.resolve() == args.dataset.resolve():
        p.error("--out must differ from --dataset")
    return args


def load_vae(base: Path, device: str):
    from diffusers import AutoencoderKL

    folder = base / "vae" if (base / "vae").is_dir() else base
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no diffusers VAE in {base} (looked for vae/config.json and config.json)")
    return AutoencoderKL.from_pretrained(folder, torch_dtype="float32").to(device).eval()


def reconstruct(vae, images: list[Image.Image], device: str) -> list[Image.Image]:
    """Encode (the latent distribution's mean) and decode; sides must be multiples of 8 (the stored squares are)."""
    import torch

    x = np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1.0 for im in images]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        t = torch.from_numpy(x).to(device)
        latents = vae.encode(t).latent_dist.mean
        out = vae.decode(latents).sample.clamp(-1, 1)
    arr = ((out.cpu().numpy().transpose(0, 2, 3, 1) + 1.0) * 127.5).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def main(args: argparse.Namespace) -> dict:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = [json.loads(x) for x in (args.dataset / "manifest.jsonl").read_text().splitlines() if x.strip()]
    todo = [r for r in rows if r["label"] == "human" and r["split"] in args.splits]
    vae = load_vae(args.base, device)
    args.out.mkdir(parents=True, exist_ok=True)
    # The originals are shared, not copied: the new manifest points into the old dataset's images.
    rel_root = Path("..") / args.dataset.resolve().name if args.out.resolve().parent == args.dataset.resolve().parent \
        else args.dataset.resolve()
    out_rows = [{**r, "path": str(rel_root / r["path"])} for r in rows]
    base_id = str(args.base.resolve())
    for start in range(0, len(todo), args.batch_size):
        chunk = todo[start : start + args.batch_size]
        images = [Image.open(args.dataset / r["path"]).convert("RGB") for r in chunk]
        for r, twin in zip(chunk, reconstruct(vae, images, device)):
            stem = hashlib.sha256(f"twin/{base_id}/{r['path']}".encode()).hexdigest()[:20]
            rel = Path("images") / "vae-twins" / f"{stem}.png"
            (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            twin.save(buf, format="PNG", compress_level=3)
            (args.out / rel).write_bytes(buf.getvalue())
            out_rows.append({**r, "source": "vae-twins", "label": "ai-mimicry", "path": str(rel),
                             "generator": f"VAE reconstruction ({args.base.name})", "twin_of": r["path"],
                             "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
        print(f"{min(start + args.batch_size, len(todo))}/{len(todo)} twins", file=sys.stderr)
    (args.out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out_rows))
    data = json.loads((args.dataset / "dataset.json").read_text())
    data["twins"] = {"base": base_id, "splits": args.splits, "count": len(todo)}
    data["generators"] = sorted(set(data.get("generators", [])) | {f"VAE reconstruction ({args.base.name})"})
    (args.out / "dataset.json").write_text(json.dumps(data, indent=2))
    if (args.dataset / "skipped.jsonl").is_file():
        shutil.copy(args.dataset / "skipped.jsonl", args.out / "skipped.jsonl")
    return data["twins"]


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(json.dumps(main(args)))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
