"""Where in the image the model's evidence lies, scored through the detector's own onnxruntime session.

Model-agnostic and without torch. ``grid`` x ``grid`` square windows (``window`` of the side of what
the model sees), evenly spaced to cover it, and the copies they make go through onnxruntime in
batches. Two ways to use a window:

* ``method="window"`` (sliding window, the default): each window is cut out of the image and scored
  on its own. The heat of a pixel is the mean over the windows that cover it of the window's
  calibrated score minus the ``ai-mimicry`` threshold: > 0 where the windows around it would be
  flagged by themselves, < 0 where they would not. It finds a pasted-in or generated region even
  when the image as a whole looks human (checked on the bundled model: ``tests/detector/test_explain.py``).
* ``method="occlusion"``: each window is covered with the image's mean colour and the whole image
  is scored. The heat of a pixel is the mean drop of the model's logit when it is covered: > 0
  where the verdict leans on it towards ``ai-mimicry``, < 0 towards ``human``. It explains the
  verdict as given, but the bundled whole-image model spreads its evidence: on 18 pictures pasted
  together from real works and mimicry it put the most heat on the odd one out in 10, windows in
  all 18 (``bench/explain_benchmark.py``, 8 x 8 windows of a quarter side).

    from mimicry.detector import Detector
    from mimicry.detector.explain import explain

    ex = explain(Detector.default(), "suspect.png")
    ex.verdict.label, ex.heat.shape          # the verdict (the same as Detector.predict gives) and HxW heat
    open("heat.png", "wb").write(ex.overlay_png)

Cost: one decode and ``grid**2 + 1`` forward passes (65 by default), in batches built as they run
(:class:`ExplainPlan` lets a server run them through its own queue).
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .decode import Source
from .preprocess import preprocess
from .verdict import Verdict

if TYPE_CHECKING:
    from .detector import Detector

METHODS = ("window", "occlusion")


def default_window(grid: int) -> float:
    """The window side for ``grid`` windows per axis when none is given: a quarter of the side, or larger
    where a quarter would leave gaps (``2 / grid``: neighbouring windows overlap by half and cover the image)."""
    return max(0.25, round(2.0 / grid, 4))
MAX_GRID = 32


@dataclasses.dataclass
class Explanation:
    """A verdict and where its evidence lies.

    ``heat`` is float32 of shape ``(H, W)``: the overlay's size, which is the decoded image's size
    scaled down (never up) so that its longer side is at most ``max_side``. > 0 is evidence for
    ``ai-mimicry``, < 0 for ``human``; the units depend on ``method`` (module doc). Pixels the model
    does not see (cut off by a centre-crop input policy) are 0.
    ``overlay_png`` is the image with the heat drawn over it, at the heat's size, in the verdict's colour
    (:func:`render_overlay`; :func:`legend` says it in words). ``base_logit`` is the unoccluded image's logit.
    """

    verdict: Verdict
    heat: np.ndarray
    overlay_png: bytes
    base_logit: float
    method: str
    grid: int
    window: float

    def to_dict(self) -> dict:
        """JSON-ready summary (the heat as a nested list of its ``grid`` x ``grid`` cell means;
        the full-size map and the PNG are left out)."""
        h, w = self.heat.shape
        ys = np.linspace(0, h, self.grid + 1).astype(int)
        xs = np.linspace(0, w, self.grid + 1).astype(int)
        cells = [[float(self.heat[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean()) if ys[i + 1] > ys[i] and xs[j + 1] > xs[j]
                  else 0.0 for j in range(self.grid)] for i in range(self.grid)]
        return {"verdict": self.verdict.to_dict(), "heat_grid": cells, "heat_shape": [h, w],
                "base_logit": self.base_logit, "method": self.method, "grid": self.grid, "window": self.window}


def explain(detector: Detector, source: Source, *, method: str = "window", grid: int = 8,
            window: float | None = None, max_side: int = 1024, batch_size: int = 256,
            name: str | None = None) -> Explanation:
    """The verdict for ``source`` and a heatmap of where its evidence lies (see the module doc).

    ``method`` is ``"window"`` or ``"occlusion"``; ``grid`` windows per axis (2..32), each ``window``
    (0..1] of the side of what the model sees (default :func:`default_window`), evenly spaced so that together
    they cover it (``grid * window >= 1``). The ``grid**2 + 1`` inputs go through ``session.run`` in batches of at
    most ``batch_size``, each built only when it runs. ``name`` is the verdict's source (default: the
    path, or ``"<bytes #0>"``). The verdict is the one :meth:`Detector.predict` gives for ``source``'s first
    frame, without attribution: an animation is explained, and scored, on its first frame only (``predict``
    averages several), and the verdict has no ``artists`` or ``copy_of`` evidence.
    Raises ``mimicry.detector.decode.DecodeError`` for an unreadable image and ValueError for bad settings.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    plan = ExplainPlan(detector, source, method=method, grid=grid, window=window, max_side=max_side, name=name)
    logits = [detector.predict_arrays(plan.inputs(i, min(i + batch_size, plan.size)))
              for i in range(0, plan.size, batch_size)]
    return plan.finish(np.concatenate(logits))


class ExplainPlan:
    """One explanation in three steps, so that a server can send its forward passes through its own
    bounded queue in small chunks (``mimicry.service``): decode (the constructor), the model's
    inputs in any slices (:meth:`inputs`, rows ``0 .. size - 1``: row 0 is the image, row ``k`` window
    ``k``), then :meth:`finish` with the logits of all rows. :func:`explain` is the three in a row.
    Memory: the decoded image and one slice of inputs at a time."""

    def __init__(self, detector: Detector, source: Source, *, method: str = "window", grid: int = 8,
                 window: float | None = None, max_side: int = 1024, name: str | None = None):
        window = _checked_window(method, grid, window, max_side)
        self.detector, self.method, self.grid, self.window, self.max_side = detector, method, grid, window, max_side
        self.name = name or _name(source)
        cfg = detector.config
        # The same decode as Detector.load, so the verdict is exactly the one a scan gives.
        self.image, self.signals = detector.decode(source)
        self.x = preprocess(self.image, cfg)
        side = cfg.size
        self.win = min(side, max(1, math.ceil(window * side - 1e-9)))  # rounding up: grid * window >= 1 covers it
        starts = np.round(np.linspace(0, side - self.win, grid)).astype(int)
        self.boxes = [(int(y0), int(x0)) for y0 in starts for x0 in starts]  # in the model input's pixels
        self._view = _view_box(self.image.size, cfg.resize)

    @property
    def size(self) -> int:
        """Rows of model input: the image and its ``grid**2`` windows."""
        return len(self.boxes) + 1

    def inputs(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop - 1`` of the model's input, float32 ``(stop - start, 3, size, size)``."""
        if not 0 <= start <= stop <= self.size:
            raise ValueError(f"rows {start}..{stop} outside 0..{self.size}")
        cfg, win = self.detector.config, self.win
        out = np.empty((stop - start, *self.x.shape), np.float32)
        for i, k in enumerate(range(start, stop)):
            if k == 0:
                out[i] = self.x
                continue
            y0, x0 = self.boxes[k - 1]
            if self.method == "occlusion":
                out[i] = self.x
                out[i, :, y0:y0 + win, x0:x0 + win] = self.x.mean(axis=(1, 2), keepdims=True)
            else:
                out[i] = preprocess(self.image.crop(_image_box(self._view, cfg.size, y0, x0, win)), cfg)
        return out

    def finish(self, logits: np.ndarray) -> Explanation:
        """The explanation from the logits of all :attr:`size` rows, in row order."""
        logits = np.asarray(logits, np.float64).reshape(-1)
        if len(logits) != self.size:
            raise ValueError(f"expected {self.size} logits, got {len(logits)}")
        det, side, win = self.detector, self.detector.config.size, self.win
        base = float(logits[0])
        if self.method == "occlusion":
            values = base - logits[1:]
        else:
            values = det.bundle.calibration(logits[1:].astype(np.float32)).astype(np.float64) \
                - det.bundle.thresholds.ai_mimicry
        total = np.zeros((side, side))
        count = np.zeros((side, side))
        for (y0, x0), value in zip(self.boxes, values):
            total[y0:y0 + win, x0:x0 + win] += value
            count[y0:y0 + win, x0:x0 + win] += 1
        heat_input = (total / count).astype(np.float32)  # every pixel is covered: _checked_window

        verdict = det.verdict(self.name, base, self.signals)
        out_size = _fit(self.image.size, self.max_side)
        heat = _to_image_space(heat_input, self.image.size, out_size, det.config.resize)
        shown = self.image if self.image.size == out_size else self.image.resize(out_size, Image.Resampling.BILINEAR)
        return Explanation(verdict=verdict, heat=heat,
                           overlay_png=render_overlay(shown, heat, verdict),
                           base_logit=base, method=self.method, grid=self.grid, window=self.window)


# What each verdict is drawn in (RGB): the colour says the verdict, its strength where the evidence for it lies.
VERDICT_COLOURS = {"ai-mimicry": (220, 20, 20), "human": (20, 70, 230), "uncertain": (230, 150, 0)}


def render_overlay(image: Image.Image, heat: np.ndarray, verdict: Verdict | None = None) -> bytes:
    """``image`` (RGB, the heat's size) with ``heat`` drawn over it, as PNG bytes of the same size (no
    caption in the picture: the legend is the caller's to show beside it).

    With a ``verdict``, the overlay is in the verdict's colour (:data:`VERDICT_COLOURS`) and its strength
    grows with the evidence for that verdict, relative to the rest of the image: for ``ai-mimicry`` where
    the heat is highest, for ``human`` where it is lowest, for ``uncertain`` where it is furthest from its
    median either way. So a flagged image is never painted in the colour of "human" because its windows,
    each seeing less than the whole, all scored under the threshold. Without a verdict, red where the heat
    is > 0 and blue where it is < 0, scaled to the largest absolute value."""
    if image.size != (heat.shape[1], heat.shape[0]):
        raise ValueError(f"heat of shape {heat.shape} does not fit an image of size {image.size}")
    rgb = np.asarray(image.convert("RGB"), np.float32)
    grey = rgb.mean(axis=2, keepdims=True)
    base = 0.45 * grey + 0.25 * rgb + 0.3 * 255  # faded, mostly grey: the colours are the heat's
    label = verdict.label if verdict is not None else None
    if label in VERDICT_COLOURS:
        towards = {"ai-mimicry": heat, "human": -heat}.get(label, np.abs(heat - np.median(heat)))
        span = float(towards.max() - towards.min())
        strength = (towards - towards.min()) / span if span > 0 else np.zeros_like(heat)
        colour = np.broadcast_to(np.array(VERDICT_COLOURS[label], np.float32), rgb.shape)
    else:
        peak = float(np.abs(heat).max())
        norm = heat / peak if peak > 0 else np.zeros_like(heat)
        strength = np.abs(norm)
        colour = np.where(norm[..., None] >= 0, np.array(VERDICT_COLOURS["ai-mimicry"], np.float32),
                          np.array(VERDICT_COLOURS["human"], np.float32))
    alpha = (0.75 * strength)[..., None]
    out = Image.fromarray(np.clip(base * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def legend(explanation: Explanation) -> str:
    """One line that says what the overlay's colour means, for a caller to print or show beside it."""
    v = explanation.verdict
    colour = {"ai-mimicry": "red", "human": "blue", "uncertain": "amber"}.get(v.label, "red/blue")
    where = {"ai-mimicry": "the evidence for AI mimicry", "human": "the evidence for human work",
             "uncertain": "the evidence either way"}.get(v.label, "the evidence")
    return (f"{v.label} (score {v.score:.3f}): {colour} where {where} is strongest, relative to the rest of the "
            f"image ({explanation.method}, {explanation.grid}x{explanation.grid} windows)")


# ----------------------------------------------------------------------------- helpers


def _checked_window(method: str, grid: int, window: float | None, max_side: int) -> float:
    """The window side to use (``window``, or :func:`default_window` once ``grid`` is known to be valid);
    ValueError for any setting out of range."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or not 2 <= grid <= MAX_GRID:
        raise ValueError(f"grid must be an integer from 2 to {MAX_GRID}, got {grid!r}")
    if window is None:
        window = default_window(grid)
    if not 0 < window <= 1:
        raise ValueError(f"window must be in (0, 1], got {window!r}")
    if grid * window < 1:
        raise ValueError(f"grid * window must be >= 1 so that the windows cover the image; got {grid} * {window}")
    if max_side < 16:
        raise ValueError(f"max_side must be >= 16, got {max_side}")
    return window


def _view_box(size: tuple[int, int], resize_policy: str) -> tuple[float, float, float, float]:
    """The part of the image the model sees: all of it (squash) or its centred square."""
    w, h = size
    if resize_policy == "squash" or w == h:
        return 0.0, 0.0, float(w), float(h)
    side = min(w, h)
    return (w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2


def _image_box(view: tuple[float, float, float, float], side: int, y0: int, x0: int, win: int) -> tuple[int, int, int, int]:
    """A window given in the model input's pixels, as a crop box in the image's pixels (>= 1 px)."""
    left, top, right, bottom = view
    sx, sy = (right - left) / side, (bottom - top) / side
    box = [round(left + x0 * sx), round(top + y0 * sy), round(left + (x0 + win) * sx), round(top + (y0 + win) * sy)]
    box[2], box[3] = max(box[2], box[0] + 1), max(box[3], box[1] + 1)
    return box[0], box[1], box[2], box[3]


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_image_space(heat_input: np.ndarray, image_size: tuple[int, int], out_size: tuple[int, int],
                    resize_policy: str) -> np.ndarray:
    """Map the heat from the model's square input back onto the (scaled) image."""
    ow, oh = out_size
    as_image = Image.fromarray(heat_input, "F")
    if resize_policy == "squash":
        return np.asarray(as_image.resize((ow, oh), Image.Resampling.BILINEAR), np.float32).copy()
    # shorter_then_center_crop: the input is the centred square of the image; the margins get 0.
    w, h = image_size
    scale = ow / w
    side = min(w, h) * scale
    left, top = round((ow - side) / 2), round((oh - side) / 2)
    inner = max(1, round(side))
    out = np.zeros((oh, ow), np.float32)
    block = np.asarray(as_image.resize((inner, inner), Image.Resampling.BILINEAR), np.float32)
    out[top:top + inner, left:left + inner] = block[: oh - top, : ow - left]
    return out


def _name(source: Source) -> str:
    from .detector import describe_source

    return describe_source(source, 0)
