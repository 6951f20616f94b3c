"""Train a tiny text-to-image base model of Stable Diffusion's architecture on clip art.

No Stable Diffusion weights can be had offline, so the demo makes its own base: the same diffusers
components (AutoencoderKL, UNet2DConditionModel, CLIPTextModel + CLIPTokenizer, a DDPM-family
scheduler) at a size a 2-core CPU can train in about an hour, on the openclipart works of authors
who are NOT demo artists, captioned from each work's title and category. The result is saved as an
ordinary ``StableDiffusionPipeline`` directory (safetensors), so the DreamBooth module treats it
exactly like a real SD 1.x checkpoint.

Stages, each checkpointed so that a re-run resumes:
  1. decode + normalise the corpus once (cached as one uint8 array),
  2. a BPE tokenizer on the captions,
  3. the VAE (f=8) on random 64-px crops (it is fully convolutional),
  4. latents of every image, once,
  5. UNet + text encoder on the cached latents, epsilon prediction, min-SNR weighting, EMA.

It is lean on purpose: one file, no distributed training. ``python -m mimicry.training.tiny_base --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from mimicry.training.corpus import DEMO_ARTISTS, NOT_ILLUSTRATION, normalize_artwork, scan_catalogue

CAPTION_EXTRAS = ["in the style of", "sks", "style", "illustration", "drawing", "icon", "simple"]


def _load_one(args: tuple[str, int]) -> np.ndarray | None:
    path, size = args
    try:
        with Image.open(path) as im:
            arr = np.asarray(normalize_artwork(im, size), dtype=np.uint8)
    except Exception:
        return None
    # Some openclipart exports are blank pages (gradients the exporter could not render).
    return None if arr.std() < 2.0 else arr


def load_base_corpus(cache: Path, size: int, exclude: set[str], workers: int) -> tuple[np.ndarray, list[str]]:
    """All usable works by authors outside ``exclude``, normalised; cached in ``cache``."""
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["images"], [str(c) for c in z["captions"]]
    works, _ = scan_catalogue()
    works = [w for w in works if w.author not in exclude]
    with Pool(workers) as pool:
        arrays = pool.map(_load_one, [(w.path, size) for w in works], chunksize=16)
    keep = [(a, w.caption) for a, w in zip(arrays, works) if a is not None]
    images = np.stack([a for a, _ in keep])
    captions = [c for _, c in keep]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images, captions=np.array(captions))
    return images, captions


def train_tokenizer(captions: list[str], vocab_size: int, out: Path):
    """A byte-level-free BPE with CLIP's conventions ("</w>" word ends, start/end tokens)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789"),
        show_progress=False,
    )
    tok.train_from_iterator(captions + CAPTION_EXTRAS * 50, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    clip_tok = CLIPTokenizer(vocab=model["vocab"], merges=merges)
    clip_tok.model_max_length = 32
    clip_tok.save_pretrained(out)
    return CLIPTokenizer.from_pretrained(out)


def build_components(vocab_size: int, pad_id: int, bos_id: int, eos_id: int):
    """The tiny component configs; the numbers are documented in the model card."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 96, 96),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=128,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=32,
            pad_token_id=pad_id,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 128, 192),
        layers_per_block=1,
        cross_attention_dim=128,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    return vae, text_encoder, unet


def train_vae(vae, images: np.ndarray, steps: int, minutes: float, batch: int, crop: int, lr: float, ckpt: Path, seed: int):
    import torch
    import torch.nn.functional as F

    state_path = ckpt / "vae_state.pt"
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    if state_path.exists():
        st = torch.load(state_path, weights_only=True)
        vae.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start = int(st["step"])
    rng = np.random.default_rng(seed + start)
    vae.train()
    t0, step, last_save = time.time(), start, time.time()
    while step < steps and (time.time() - t0) < minutes * 60:
        idx = rng.integers(0, len(images), batch)
        ys, xs = rng.integers(0, images.shape[1] - crop + 1, (2, batch))
        crops = np.stack([images[i, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs)])
        flip = rng.random(batch) < 0.5
        crops[flip] = crops[flip, :, ::-1]
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / (x.shape[1] * x.shape[2] * x.shape[3])
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"vae step {step} loss {loss.item():.4f} ({(time.time() - t0) / (step - start):.2f} s/step)", flush=True)
        if time.time() - last_save > 300:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, state_path)
            last_save = time.time()
    torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, state_path)
    vae.eval()
    return step


def encode_latents(vae, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Posterior mean and std of every image (fp16 storage halves the cache)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            d = vae.encode(x).latent_dist
            out.append(torch.cat([d.mean, d.std], dim=1).numpy().astype(np.float16))
    return np.concatenate(out)


def train_unet(unet, text_encoder, tokenizer, latents: np.ndarray, captions: list[str], scaling: float,
               steps: int, minutes: float, batch: int, lr: float, ckpt: Path, seed: int, drop_caption: float = 0.1):
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel, compute_snr

    noise_sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=0.999)
    state_path = ckpt / "unet_state.pt"
    start = 0
    if state_path.exists():
        st = torch.load(state_path, weights_only=True)
        unet.load_state_dict(st["unet"])
        text_encoder.load_state_dict(st["text"])
        opt.load_state_dict(st["opt"])
        ema.load_state_dict(st["ema"])
        start = int(st["step"])
    ids_all = tokenizer(captions, padding="max_length", truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    rng = np.random.default_rng(seed + start)
    torch.manual_seed(seed + start)
    unet.train()
    text_encoder.train()
    t0, step, last_save, ema_loss = time.time(), start, time.time(), None

    def save():
        torch.save({"unet": unet.state_dict(), "text": text_encoder.state_dict(), "opt": opt.state_dict(),
                    "ema": ema.state_dict(), "step": step}, state_path)

    while step < steps and (time.time() - t0) < minutes * 60:
        idx = rng.integers(0, len(latents), batch)
        ms = torch.from_numpy(latents[idx].astype(np.float32))
        mean, std = ms[:, :4], ms[:, 4:]
        z = (mean + std * torch.randn_like(std)) * scaling
        ids = ids_all[idx].clone()
        ids[torch.from_numpy(rng.random(batch) < drop_caption)] = empty[0]
        noise = torch.randn_like(z)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,))
        noisy = noise_sched.add_noise(z, noise, t)
        enc = text_encoder(ids)[0]
        pred = unet(noisy, t, enc).sample
        snr = compute_snr(noise_sched, t)
        w = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 weighting for epsilon prediction
        loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * w).mean()
        warm = min(1.0, (step + 1) / 200)
        for g in opt.param_groups:
            g["lr"] = lr * warm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.step(params)
        step += 1
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"unet step {step} loss {ema_loss:.4f} ({(time.time() - t0) / (step - start):.2f} s/step)", flush=True)
        if time.time() - last_save > 300:
            save()
            last_save = time.time()
    save()
    ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("models/tiny-sd-clipart"))
    p.add_argument("--work", type=Path, default=Path("data/cache/tiny_base"), help="caches and checkpoints")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=1536)
    p.add_argument("--vae-steps", type=int, default=4000)
    p.add_argument("--vae-minutes", type=float, default=15)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-crop", type=int, default=64)
    p.add_argument("--vae-lr", type=float, default=5e-4)
    p.add_argument("--unet-steps", type=int, default=20000)
    p.add_argument("--unet-minutes", type=float, default=55)
    p.add_argument("--unet-batch", type=int, default=16)
    p.add_argument("--unet-lr", type=float, default=4e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.workers)
    args.work.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    images, captions = load_base_corpus(args.work / f"images_{args.size}.npz", args.size, set(DEMO_ARTISTS) | set(NOT_ILLUSTRATION), args.workers)
    print(f"base corpus: {len(images)} images, {time.time() - t_all:.0f} s", flush=True)
    tokenizer = train_tokenizer(captions, args.vocab_size, args.work / "tokenizer")
    vae, text_encoder, unet = build_components(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    )
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in [("vae", vae), ("text_encoder", text_encoder), ("unet", unet)]}
    print("parameters:", n_params, flush=True)
    t = time.time()
    vae_steps = train_vae(vae, images, args.vae_steps, args.vae_minutes, args.vae_batch, args.vae_crop, args.vae_lr, args.work, args.seed)
    vae_time = time.time() - t
    lat_path = args.work / f"latents_{vae_steps}.npy"
    if lat_path.exists():
        latents = np.load(lat_path)
    else:
        latents = encode_latents(vae, images)
        np.save(lat_path, latents)
    scaling = float(1.0 / latents[:, :4].astype(np.float32).std())
    vae.register_to_config(scaling_factor=scaling)
    print(f"latents {latents.shape}, scaling factor {scaling:.4f}", flush=True)
    t = time.time()
    unet_steps = train_unet(unet, text_encoder, tokenizer, latents, captions, scaling, args.unet_steps, args.unet_minutes,
                            args.unet_batch, args.unet_lr, args.work, args.seed)
    unet_time = time.time() - t
    sched = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    save_base(pipe, args.out)
    card = {
        "what": "tiny Stable-Diffusion-architecture base model trained on openclipart (demo scale)",
        "trained_on": f"{len(images)} openclipart works by authors outside the demo set, captions from title and category",
        "excluded_artists": sorted(DEMO_ARTISTS) + list(NOT_ILLUSTRATION),
        "resolution": args.size,
        "parameters": n_params,
        "vae_steps": vae_steps,
        "vae_minutes": round(vae_time / 60, 1),
        "unet_steps": unet_steps,
        "unet_minutes": round(unet_time / 60, 1),
        "total_minutes": round((time.time() - t_all) / 60, 1),
        "latent_scaling_factor": scaling,
        "storage_dtype": STORAGE_DTYPE,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
    }
    (args.out / "training_card.json").write_text(json.dumps(card, indent=2))
    write_model_card(args.out, card)
    print(json.dumps(card, indent=2))
    return 0


STORAGE_DTYPE = ("UNet and VAE float16, text encoder float32; DiffusionPipeline.from_pretrained(path) "
                 "loads all of it as float32")


def save_base(pipe, out: Path) -> Path:
    """Write the pipeline as a diffusers folder that plain ``DiffusionPipeline.from_pretrained(out)``
    loads and runs as loaded. UNet and VAE are stored in fp16 (the base stays under 30 MB) and
    diffusers loads them as fp32; the text encoder is stored in fp32, because transformers loads a
    model in the dtype it was stored in, and an fp16 text encoder beside an fp32 UNet fails at the
    first call ("mat1 and mat2 must have the same dtype")."""
    import torch

    pipe.unet.to(torch.float16)
    pipe.vae.to(torch.float16)
    pipe.text_encoder.to(torch.float32)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def write_model_card(out: Path, card: dict) -> Path:
    """``MODEL_CARD.md`` from ``training_card.json``: what the model is, how it was made, its limits."""
    p = card["parameters"]
    text = f"""# tiny-sd-clipart: a tiny Stable-Diffusion-architecture base model (demo scale)

**What it is.** A text-to-image model with the components of Stable Diffusion 1.x (AutoencoderKL,
UNet2DConditionModel, CLIPTextModel + CLIPTokenizer, a DPM-Solver++ scheduler), small enough to
train on a 2-core CPU. It exists so that the DreamBooth mimicry attack can be reproduced offline;
it is **not** Stable Diffusion and its images are far cruder than SD's.

**Trained on.** {card["trained_on"]}. Left out: {", ".join(card["excluded_artists"])} (the demo
artists, so DreamBooth on them learns a style the base has not seen, and a set of procedural star
polygons). Public domain (Open Clip Art Library,
Debian package openclipart-png).

**Size.** VAE {p["vae"]:,} parameters (f=8, 4 latent channels), text encoder {p["text_encoder"]:,},
UNet {p["unet"]:,}; {card["resolution"]} px images, 16x16x4 latents. Stored as safetensors, the
UNet and VAE in fp16 and the text encoder in fp32; `DiffusionPipeline.from_pretrained(path)` with
default arguments loads it all as fp32 and generates.

**How it was made.** `python -m mimicry.training.tiny_base` (see its docstring): BPE tokenizer on the
captions; the VAE on random 64-px crops (MSE + 0.5 L1 + 1e-4 KL), {card["vae_steps"]} steps at
batch {card["settings"]["vae_batch"]}; latents of every image once (scaling factor
{card["latent_scaling_factor"]:.4f}); then UNet and text encoder together on the cached latents
(epsilon prediction, min-SNR-5 weighting, 10% caption dropout for classifier-free guidance, EMA
0.999), {card["unet_steps"]} steps at batch {card["settings"]["unet_batch"]}. {card.get("history_note", "")}

**Limits.** Blurry at edges, washed colours, weak prompt following beyond the category; good enough
for clip-art palettes and silhouettes, which is what the demo needs. Samples:
`docs/tiny_base_samples.png`. Full settings and timings: `training_card.json`.
"""
    path = out / "MODEL_CARD.md"
    path.write_text(text)
    return path


if __name__ == "__main__":
    sys.exit(main())
