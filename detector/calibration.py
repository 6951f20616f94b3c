"""From the model's logit to a calibrated score, and from a score to a label.

Both halves are read from ``model.json`` (``calibration`` and ``thresholds``) and checked there:
a calibration that is not monotone increasing, or thresholds out of order, would make a higher
logit mean "less likely mimicry" for some inputs, so they are refused rather than used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

LABELS = ("human", "uncertain", "ai-mimicry")
METHODS = ("platt", "isotonic")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """``platt``: ``score = sigmoid(a * logit + b)`` with ``a > 0``; ``isotonic``: ``score =
    np.interp(logit, x, y)`` with ``x`` increasing and ``y`` non-decreasing in [0, 1]."""

    method: str
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method == "platt":
            if not (np.isfinite(self.a) and np.isfinite(self.b)):
                raise ValueError(f"platt a and b must be finite, got a={self.a}, b={self.b}")
            if self.a <= 0:
                raise ValueError(f"platt slope a={self.a} <= 0: scores would fall as the logit rises")
        elif self.method == "isotonic":
            x, y = np.asarray(self.x, float), np.asarray(self.y, float)
            if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
                raise ValueError(f"isotonic x and y must be equal-length lists of >= 2 numbers, "
                                 f"got {len(self.x)} and {len(self.y)}")
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise ValueError("isotonic x and y must be finite")
            if np.any(np.diff(x) <= 0):
                raise ValueError("isotonic x must be strictly increasing")
            if np.any(np.diff(y) < 0) or y[0] < 0 or y[-1] > 1:
                raise ValueError("isotonic y must be non-decreasing within [0, 1]")
        else:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        """Read the ``calibration`` section of ``model.json`` (extra keys such as ``fit_on`` are notes)."""
        method = d.get("method")
        if method == "platt":
            return cls("platt", a=float(d["a"]), b=float(d["b"]))
        if method == "isotonic":
            return cls("isotonic", x=tuple(float(v) for v in d["x"]), y=tuple(float(v) for v in d["y"]))
        return cls(str(method))  # __post_init__ refuses it with the list of methods

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated scores (probability of AI mimicry) for an array of logits."""
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "platt":
            t = self.a * z + self.b
            return np.exp(-np.logaddexp(0.0, -t))  # sigmoid(t) without overflow for large |t|
        return np.interp(z, self.x, self.y)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """``score >= ai_mimicry`` -> "ai-mimicry"; ``score < human_below`` -> "human"; else "uncertain"."""

    ai_mimicry: float
    human_below: float
    how_chosen: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.ai_mimicry) and np.isfinite(self.human_below)):
            raise ValueError(f"thresholds must be finite, got ai_mimicry={self.ai_mimicry}, "
                             f"human_below={self.human_below}")
        if self.human_below > self.ai_mimicry:
            raise ValueError(f"human_below {self.human_below} is above ai_mimicry {self.ai_mimicry}")

    @classmethod
    def from_dict(cls, d: Mapping) -> Thresholds:
        """Read the ``thresholds`` section of ``model.json``."""
        return cls(float(d["ai_mimicry"]), float(d["human_below"]), str(d.get("how_chosen", "")))

    def label(self, score: float) -> str:
        """The band ``score`` falls in: one of :data:`LABELS`."""
        if score >= self.ai_mimicry:
            return "ai-mimicry"
        if score < self.human_below:
            return "human"
        return "uncertain"
