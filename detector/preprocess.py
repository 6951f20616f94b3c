"""The one preprocessing source: an RGB image becomes the model's input array.

Training (``mimicry.training.finetune`` wraps the result with ``torch.from_numpy``), ONNX export parity and
serving all call :func:`preprocess`, so they cannot drift apart. Pure numpy and Pillow, no
randomness: the same image and config always give the same array.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping

import numpy as np
from PIL import Image

RESIZE_POLICIES = ("squash", "shorter_then_center_crop")
INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """How an image becomes a ``(3, size, size)`` float32 array; travels in ``model.json``.

    ``resize``: ``"squash"`` resizes the whole image to ``size`` x ``size`` (aspect ratio not kept;
    nothing is cut off), ``"shorter_then_center_crop"`` takes the centred square of side
    ``min(width, height)`` and resizes it to ``size`` (aspect kept; the margins of the longer side
    are cut off). ``mean`` and ``std`` are per RGB channel on the 0-1 scale.

    ``detail`` (optional): the side, in pixels, of the finest grid the model looks at. An image whose
    sides (after the crop) are both larger is first area-averaged to ``detail`` x ``detail``, then
    resized to ``size``; a smaller one is resized directly. A style encoder built this way compares
    two works by what they share at that scale, so a softer copy or imitation of a crisp work
    (re-encoded, resized, drawn by a generator that blurs) meets it on equal terms. None: no such step.
    """

    size: int
    resize: str = "squash"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    detail: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {self.interpolation!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or not all(np.isfinite(value)):
                raise ValueError(f"{name} must be three finite numbers (R, G, B), got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)  # lists from JSON become tuples: hashable, immutable
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        object.__setattr__(self, "size", int(self.size))
        if self.detail is not None:
            if isinstance(self.detail, bool) or not isinstance(self.detail, (int, np.integer)) or self.detail < 1:
                raise ValueError(f"detail must be a positive integer or None, got {self.detail!r}")
            object.__setattr__(self, "detail", int(self.detail))

    def to_dict(self) -> dict:
        """A JSON-ready dict (lists for mean and std) that :meth:`from_dict` reads back."""
        d = {"size": self.size, "resize": self.resize, "interpolation": self.interpolation,
             "mean": list(self.mean), "std": list(self.std)}
        if self.detail is not None:  # written only when set: cards without it read as before
            d["detail"] = self.detail
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> PreprocessConfig:
        """Read :meth:`to_dict` output. Unknown keys are refused: a preprocessing setting this
        version does not understand must not be dropped silently."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown preprocessing setting(s) {unknown}; known: {sorted(fields)}")
        missing = sorted(f for f in ("size", "mean", "std") if f not in d)
        if missing:
            raise ValueError(f"preprocessing setting(s) {missing} missing")
        return cls(**dict(d))


def preprocess(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize an 8-bit RGB image as ``cfg`` says and return ``(x/255 - mean)/std`` as float32
    CHW of shape ``(3, cfg.size, cfg.size)``. Decode with ``mimicry.detector.decode.decode_image`` first."""
    if image.mode != "RGB":
        raise ValueError(f"preprocess needs an 8-bit RGB image (decode_image gives one), got mode {image.mode}")
    resample = INTERPOLATIONS[cfg.interpolation]
    target = (cfg.size, cfg.size)
    w, h = image.size
    if cfg.resize == "squash" or w == h:
        box = None
    else:
        side = min(w, h)
        # Resizing the centred square directly equals "shorter side to size, then centre crop",
        # without the rounding of an intermediate size.
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    crop_w, crop_h = (w, h) if box is None else (box[2] - box[0],) * 2
    if cfg.detail is not None and min(crop_w, crop_h) > cfg.detail:
        # Area averages over the (cropped) image: the grid of `detail`, whatever the input's size.
        image = image.resize((cfg.detail, cfg.detail), Image.Resampling.BOX, box=box)
        box = None
    if image.size != target or box is not None:
        image = image.resize(target, resample, box=box)
    planes = np.asarray(image).transpose(2, 0, 1)  # uint8 HWC viewed as CHW, no copy
    table = _normalise_table(cfg.mean, cfg.std)
    out = np.empty(planes.shape, np.float32)
    for c in range(3):
        np.take(table[c], planes[c], out=out[c])
    return out


@functools.lru_cache(maxsize=8)
def _normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(v/255 - mean[c])/std[c]`` in float32 for every 8-bit level ``v`` of channel ``c``: ``(3, 256)``.

    Looking each pixel up gives bit for bit the array that the same float32 arithmetic over the whole image
    gives (the table holds its results), 2.6 times as fast on a 320-px input (BENCHMARKS.md)."""
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    table = (levels - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    table.setflags(write=False)
    return table


def preprocess_batch(images: Iterable[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """:func:`preprocess` each image and stack them: ``(N, 3, size, size)`` float32."""
    arrays = [preprocess(im, cfg) for im in images]
    if not arrays:
        return np.zeros((0, 3, cfg.size, cfg.size), np.float32)
    return np.stack(arrays)
