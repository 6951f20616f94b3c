"""Benchmark: ``mimicry.training.dreambooth`` at Stable Diffusion 1.5's size on a CUDA GPU: seconds per step and
peak GPU memory, per method (full UNet or LoRA), precision and gradient checkpointing.

No SD 1.5 weights exist where this runs (nothing is downloaded), so the base is SD 1.5's architecture with random
weights, written in diffusers format: the UNet (block widths 320/640/1280/1280, cross-attention 768, 860M
parameters), a CLIP ViT-L/14-sized text encoder (12 layers, 768 wide, 77 tokens) and the f=8 VAE (128/256/512/512).
A step's time and memory depend on those shapes, not on the values. The instance images are 8 drawn pictures at
512 px and the class images (prior preservation, as in the README's recipe: a step sees one instance and one class
image at batch size 1) 8 more, written beforehand so that no sampling runs.

Each configuration runs in its own process (``accelerate`` keeps one precision per process) through
``dreambooth.main`` unchanged. The only instrument is a wrapper around the per-step batch draw
(``dreambooth.batch_rng``, called once at the start of every step): it synchronises the GPU and reads the clock
there, and at step 0 resets torch's peak-memory counter, so the peak is that of training (weights, gradients,
optimizer state, activations) and not of the loading before it. Seconds per step are the mean over steps
``--warmup``..``--steps`` (the first steps build cuDNN plans and the optimizer state). The baseline is float32
without checkpointing, measured in the same run.

``python bench/dreambooth_benchmark.py --work /dev/shm/db-bench --json BENCH.json`` (needs a CUDA device)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {  # name -> extra dreambooth arguments
    "full, float32 (baseline)": [],
    "full, fp16": ["--mixed-precision", "fp16"],
    "full, fp16, gradient checkpointing": ["--mixed-precision", "fp16", "--gradient-checkpointing"],
    "LoRA r8, fp16, gradient checkpointing": ["--lora", "--mixed-precision", "fp16", "--gradient-checkpointing"],
}


def build_sd15_architecture(out: Path) -> Path:
    """SD 1.5's pipeline shapes with random weights (float32, diffusers format)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if (out / "model_index.json").is_file():
        return out
    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for w in ["sks", "style", ",", "a", "picture", "of", "cat", "house", "tree", "boat"]:
        vocab.setdefault(w + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12,
                                                max_position_embeddings=77, hidden_act="quick_gelu",
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2,
                        block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                attention_head_dim=8, norm_num_groups=32,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def draw_folder(folder: Path, n: int, seed: int, prefix: str) -> Path:
    """``n`` drawn 512-px pictures with captions."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    subjects = ["cat", "house", "tree", "boat"]
    with open(folder / "metadata.jsonl", "w") as meta:
        for i in range(n):
            im = Image.new("RGB", (512, 512), tuple(int(c) for c in rng.integers(150, 255, 3)))
            d = ImageDraw.Draw(im)
            for _ in range(12):
                x0, y0 = (int(v) for v in rng.integers(0, 400, 2))
                d.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                          fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            name = f"{prefix}_{i:05d}.png"
            im.save(folder / name)
            meta.write(json.dumps({"file_name": name, "text": f"a picture of {subjects[i % 4]}"}) + "\n")
    return folder


def one(args: argparse.Namespace, name: str) -> dict:
    """Run one configuration in this process; return its seconds per step and peak memory."""
    import torch

    from mimicry.training import dreambooth

    marks: list[float] = []
    real = dreambooth.batch_rng

    def timed_batch_rng(seed, step, process_index=0):
        torch.cuda.synchronize()
        if not marks:
            torch.cuda.reset_peak_memory_stats()
        marks.append(time.perf_counter())
        return real(seed, step, process_index)

    dreambooth.batch_rng = timed_batch_rng
    work = args.work
    out = work / "runs" / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    argv = ["--base", str(work / "sd15-architecture"), "--instance-dir", str(work / "instance"), "--out", str(out),
            "--with-prior-preservation", "--class-dir", str(work / "class"), "--num-class-images", "8",
            "--resolution", "512", "--batch-size", "1", "--max-steps", str(args.steps),
            "--checkpoint-every", str(args.steps + 1), "--device", "cuda", *CONFIGS[name]]
    record = dreambooth.main(dreambooth.parse_args(argv))
    torch.cuda.synchronize()
    marks.append(time.perf_counter())  # the end of the last step (before the final checkpoint's save)
    peak = torch.cuda.max_memory_allocated()
    timed = marks[args.warmup: args.steps + 1]
    return {"config": name, "s_per_step": (timed[-1] - timed[0]) / (len(timed) - 1),
            "steps_timed": len(timed) - 1, "peak_allocated_gib": peak / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
            "final_loss": record["final_loss"], "method": record["method"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/dev/shm/dreambooth-bench"),
                   help="where the random SD 1.5-sized base and the runs are written (about 4.3 GB, then more)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), help="names from CONFIGS (default: all)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args, args.one)), flush=True)
        return 0

    import torch

    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA device", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    build_sd15_architecture(args.work / "sd15-architecture")
    draw_folder(args.work / "instance", 8, 0, "work")
    draw_folder(args.work / "class", 8, 1, "class")
    print(f"base and images ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for name in args.configs:
        done = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--one", name], capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode or not lines:
            rows.append({"config": name, "error": done.stderr.strip().splitlines()[-1:] or ["no output"]})
        else:
            rows.append(json.loads(lines[-1][len("RESULT "):]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        shutil.rmtree(args.work / "runs", ignore_errors=True)  # a full run's checkpoint and generator: ~15 GB
    base = next((r for r in rows if r["config"].endswith("(baseline)") and "s_per_step" in r), None)
    print(f"\nDreamBooth, SD 1.5-sized random base, 512 px, batch 1 + 1 class image, steps {args.warmup}..{args.steps}"
          f" timed; {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"| configuration | s/step | steps/s | x baseline | peak allocated GiB | peak reserved GiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['config']} | error: {r['error'][0]} | | | | |")
            continue
        speed = f"x{base['s_per_step'] / r['s_per_step']:.2f}" if base else "-"
        print(f"| {r['config']} | {r['s_per_step']:.3f} | {1 / r['s_per_step']:.2f} | {speed} | "
              f"{r['peak_allocated_gib']:.1f} | {r['peak_reserved_gib']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                         "python": platform.python_version(), "steps": args.steps,
                                         "warmup": args.warmup, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
