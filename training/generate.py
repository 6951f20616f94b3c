"""Generate mimicry images from a DreamBooth run, with full provenance per image.

Each image ``i`` of a run has a fixed prompt (the prompt bank, subjects crossed with compositions,
entered at an offset derived from the run id, stepped past the other runs of the manifest) and a fixed seed (a digest of the run id, ``--seed``
and ``i``), so a re-run fills only the shortfall, every image can be made again from its manifest
row, and two runs never share starting latents or prompt order (mimicry of a test artist must not
reuse the noise of a train artist's images). The sampling settings (scheduler, steps, guidance,
size, seed, prompts) form a *generation id*: images of one run made with other settings are
another set, kept apart in file names and in the skip check. Images go through the same normalisation as the
real works (:func:`training.corpus.normalize_artwork`): same format, size and colour mode.

``python -m mimicry.training.generate --run runs/dreambooth/gerald_g --n 40 --out data/demo``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from mimicry.training.base_model import load_pipeline
from mimicry.training.corpus import encode_png, normalize_artwork, sha256_bytes

SUBJECTS = (
    "a cat", "a dog", "a bird", "a fish", "a horse", "a butterfly", "a tree", "a flower", "an apple",
    "a house", "a car", "a bicycle", "a boat", "a train", "a plane", "a cup", "a book", "a clock",
    "a computer", "a phone", "a lamp", "a chair", "a guitar", "a hat", "a shoe", "a star", "the sun",
    "a moon", "a mountain", "a person", "a child", "a face", "a hand", "an arrow", "a sign", "a key",
)
COMPOSITIONS = (
    "centered on a white background",
    "simple icon",
    "side view",
    "with a bold outline",
    "small in the frame",
    "close up",
)
DEFAULT_TEMPLATE = "sks style, clip art of {subject}, {composition}"
DEFAULT_NEGATIVE = "photo, blurry, text, watermark"
SCHEDULERS = {
    "dpm++": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}


def prompt_bank(template: str = DEFAULT_TEMPLATE, subjects=SUBJECTS, compositions=COMPOSITIONS) -> list[str]:
    """Every subject crossed with every composition, ordered so that consecutive prompts differ in
    subject and each lap through the subjects shifts the compositions by one."""
    return [template.format(subject=s, composition=compositions[(i + lap) % len(compositions)])
            for lap in range(len(compositions)) for i, s in enumerate(subjects)]


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def image_seed(run_id: str, seed: int, index: int) -> int:
    """The sampling seed of image ``index`` of a run: distinct per run, reproducible, 32 bits."""
    return int(_digest("seed", run_id, seed, index)[:8], 16)


def prompt_offset(run_id: str, bank_size: int) -> int:
    """Where a run would enter the prompt bank on its own: a digest of its id (see :func:`run_prompt_offset`)."""
    return int(_digest("prompt", run_id)[:8], 16) % bank_size


def run_prompt_offset(run_id: str, bank: list[str], rows: list[dict]) -> int:
    """Where a run enters the prompt bank, given the rows a manifest already holds, so image ``i`` of two runs
    of one dataset has different prompts.

    A run that already has rows keeps the offset they were made with (a re-run fills its shortfall with the
    same prompts). A new run starts at :func:`prompt_offset` and steps past the offsets of the other runs of the
    manifest: two digests modulo a bank of a few dozen prompts collide often enough to matter (one run in
    ``len(bank)``). Only when every offset is taken do two runs share an order."""
    index = {p: k for k, p in enumerate(bank)}
    taken = set()
    for r in rows:
        if r.get("prompt") not in index or "index" not in r:
            continue  # another template's rows say nothing about this bank
        at = (index[r["prompt"]] - int(r["index"])) % len(bank)
        if r.get("run_id") == run_id:
            return at
        taken.add(at)
    offset = prompt_offset(run_id, len(bank))
    for step in range(len(bank)):
        if (offset + step) % len(bank) not in taken:
            return (offset + step) % len(bank)
    return offset


def generation_id(*, steps: int, guidance: float, scheduler: str, size: int | None, seed: int, template: str,
                  negative_prompt: str) -> str:
    """A short digest of the sampling settings: images of one run made with other settings are another set."""
    return "g" + _digest(steps, float(guidance), scheduler, size, seed, template, negative_prompt)[:8]


def load_generator(run_dir: Path, scheduler: str):
    """The fine-tuned pipeline of a DreamBooth run (LoRA weights applied over the base), and its record."""
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a DreamBooth run directory (no run.json)")
    record = json.loads(run_file.read_text())
    if record.get("status") != "done":
        raise ValueError(f"DreamBooth run {run_dir} has not finished (status {record.get('status')!r})")
    gen_dir = run_dir / "generator"
    settings = record["settings"]
    if record["method"] == "lora":
        base_config = Path(settings["base_config"]) if settings.get("base_config") not in (None, "None") else None
        pipe = load_pipeline(Path(settings["base"]), base_config)
        pipe.load_lora_weights(str(gen_dir))
    else:
        pipe = load_pipeline(gen_dir)
    import diffusers

    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    return pipe, record


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def generate(run_dir: Path, out_dir: Path, n: int, *, manifest: Path | None = None, seed: int = 0,
             steps: int = 25, guidance: float = 5.0, scheduler: str = "dpm++", size: int | None = None,
             template: str = DEFAULT_TEMPLATE, negative_prompt: str = DEFAULT_NEGATIVE, batch_size: int = 4,
             device: str = "auto") -> list[dict]:
    """Make images ``0..n-1`` of the run, with these sampling settings, that are not in the manifest
    yet; return the new rows."""
    import torch

    manifest = manifest or out_dir / "generated_manifest.jsonl"
    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else None
    if record is None:
        raise FileNotFoundError(f"{run_dir} is not a DreamBooth run directory (no run.json)")
    run_id = record["run_id"]
    resolution = int(record["settings"]["resolution"])
    size = size or resolution
    gen_id = generation_id(steps=steps, guidance=guidance, scheduler=scheduler, size=size, seed=seed,
                           template=template, negative_prompt=negative_prompt)
    existing = read_manifest(manifest)
    have = {r["index"] for r in existing
            if r.get("run_id") == run_id and r.get("generation_id") == gen_id
            and (manifest.parent / r["path"]).is_file()}
    todo = [i for i in range(n) if i not in have]
    if not todo:
        return []
    pipe, record = load_generator(run_dir, scheduler)
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    pipe.to(dev)
    bank = prompt_bank(template)
    offset = run_prompt_offset(run_id, bank, existing)
    folder = out_dir / "generated" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(manifest, "a") as mf:
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            prompts = [bank[(offset + i) % len(bank)] for i in idx]
            seeds = [image_seed(run_id, seed, i) for i in idx]
            t0 = time.time()
            images = pipe(prompt=prompts, negative_prompt=[negative_prompt] * len(idx), num_inference_steps=steps,
                          guidance_scale=guidance, height=resolution, width=resolution,
                          generator=[torch.Generator(device="cpu").manual_seed(s) for s in seeds]).images
            per_image = (time.time() - t0) / len(idx)
            for i, img, prompt, s in zip(idx, images, prompts, seeds):
                data = encode_png(normalize_artwork(img, size))
                name = f"{run_id}_{gen_id}_{i:05d}.png"
                tmp = folder / (name + ".tmp")
                tmp.write_bytes(data)
                os.replace(tmp, folder / name)
                row = {
                    "path": str((folder / name).relative_to(manifest.parent)),
                    "label": "ai-mimicry",
                    "artist": record.get("artist"),
                    "run_id": run_id,
                    "generation_id": gen_id,
                    "index": i,
                    "method": record["method"],
                    "base_model": record["base_model"],
                    "train_text_encoder": record["settings"].get("train_text_encoder"),
                    "prior_preservation": record["settings"].get("with_prior_preservation"),
                    "dreambooth_steps": record.get("steps"),
                    "prompt": prompt,
                    "negative_prompt": negative_prompt,
                    "seed": s,
                    "base_seed": seed,
                    "scheduler": type(pipe.scheduler).__name__,
                    "steps": steps,
                    "guidance": guidance,
                    "resolution": resolution,
                    "width": size,
                    "height": size,
                    "seconds": round(per_image, 3),
                    "sha256": sha256_bytes(data),
                }
                mf.write(json.dumps(row) + "\n")
                mf.flush()
                rows.append(row)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a DreamBooth run directory")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (images go to generated/<run_id>/)")
    p.add_argument("--manifest", type=Path, default=None, help="default: OUT/generated_manifest.jsonl")
    p.add_argument("--n", type=int, required=True, help="images wanted from this run in all")
    p.add_argument("--seed", type=int, default=0, help="mixed with the run id and the index into each image's seed")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="dpm++")
    p.add_argument("--size", type=int, default=None, help="stored side in px; default the run's resolution")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="uses {subject} and {composition}")
    p.add_argument("--negative-prompt", default=DEFAULT_NEGATIVE)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows = generate(args.run, args.out, args.n, manifest=args.manifest, seed=args.seed, steps=args.steps,
                        guidance=args.guidance, scheduler=args.scheduler, size=args.size, template=args.template,
                        negative_prompt=args.negative_prompt, batch_size=args.batch_size, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"generated {len(rows)} new images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
