"""From the model's logit to a calibrated score, and from a score to a label.

Both halves are read from ``model.json`` (``calibration`` and ``thresholds``) and checked there:
a calibration that is not monotone increasing, or thresholds out of order, would make a higher
logit mean "less likely mimicry" for some inputs, so they are refused rather than used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

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


# ----------------------------------------------------------------------------- choosing the thresholds
# One source for the export (training.export, on the val split) and for `mimicry calibrate` (on a user's own
# human works): numpy only, so the inference install can set a threshold without torch.

RULES = ("pooled", "per-source")
PLACEMENTS = ("midpoint", "gap-top")


def threshold_at_fpr(human_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold t such that at most ``fpr`` of ``human_scores`` are >= t.

    t is the next number above a score in the scores' own precision: float32 scores compared with a Python
    float are compared in float32 (NumPy's rule for a scalar beside an array), where one float64 step above
    a float32 score rounds back onto the score, and the work it should keep out would be flagged."""
    scores = np.asarray(human_scores)
    dtype = scores.dtype.type if scores.dtype in (np.float32, np.float64) else np.float64
    s = np.sort(scores.astype(dtype))[::-1]
    if len(s) == 0:
        raise ValueError("no human scores to hold to the bound")
    allowed = int(np.floor(fpr * len(s)))  # how many human works may score at or above t
    # t just above the (allowed)-th highest score: that one and all below it are not flagged.
    return float(np.nextafter(s[allowed], dtype(np.inf))) if allowed < len(s) else float(s[-1])


def gap_top_threshold(human_scores: np.ndarray, mimicry_scores: np.ndarray, fpr: float) -> float:
    """A threshold that flags at most ``fpr`` of the human works, at the *top* of the gap: the lowest
    mimicry score above the admissible range, so the held-out mimicry is still flagged but human works
    of an artist who scores higher than the validation artist have the whole gap as a margin (they land
    in "uncertain" instead of being accused). With no mimicry above it, the lowest admissible threshold."""
    low = threshold_at_fpr(human_scores, fpr)
    mimicry_scores = np.asarray(mimicry_scores, dtype=np.float64)
    above = mimicry_scores[mimicry_scores >= low]
    return float(above.min()) if len(above) else low


def max_margin_threshold(human_scores: np.ndarray, mimicry_scores: np.ndarray, fpr: float) -> float:
    """A threshold that flags at most ``fpr`` of the human works, placed mid-gap.

    Every threshold between the lowest admissible one (:func:`threshold_at_fpr`) and the lowest
    mimicry score above it flags exactly the same held-out images; the lowest sits right on top of
    a human work, so the next artist's slightly higher scores would be flagged. The midpoint of the
    gap, in logit space, keeps the held-out figures and leaves the most room on both sides.
    """
    low = threshold_at_fpr(human_scores, fpr)
    mimicry_scores = np.asarray(mimicry_scores, dtype=np.float64)
    above = mimicry_scores[mimicry_scores >= low]
    if len(above) == 0:
        return low
    high = float(above.min())
    eps = 1e-12
    lo_l = np.log(max(low, eps) / max(1 - low, eps))
    hi_l = np.log(max(high, eps) / max(1 - high, eps))
    mid = float(1 / (1 + np.exp(-(lo_l + hi_l) / 2)))
    return max(low, min(mid, high))


def keep_tpr_threshold(mimicry_scores: np.ndarray, keep: float) -> float:
    """The highest threshold that still flags at least ``keep`` of ``mimicry_scores`` (scores >= it are flagged).

    Held-out mimicry of artists a model never saw is flagged at about the same rate as the validation split's
    (the split is by artist), so this is the threshold at which the share of unseen artists' mimicry flagged
    is known; raising the human-bound threshold up to it spends whatever the model has above that share on
    keeping human works of kinds it never saw out of the ``ai-mimicry`` verdict."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    s = np.sort(np.asarray(mimicry_scores, dtype=np.float64))
    if len(s) == 0:
        raise ValueError("no mimicry scores to keep flagged")
    must = int(np.ceil(keep * len(s) - 1e-9))  # how many must stay at or above the threshold
    return float(s[len(s) - must])


def threshold_groups(sources: np.ndarray, min_works: int) -> dict[str, np.ndarray]:
    """The groups of human works the per-source rule holds to the FPR bound, each a boolean mask.

    A source with at least ``min_works`` works is a group of its own. The rest are pooled into one group:
    a 1% bound on 14 works means none flagged, so the single highest-scoring work of a small source would
    set the threshold, and which work that is changes with the seed. Pooled, the small sources are
    still held to the bound together, so no kind can hide behind the large ones.
    """
    sources = np.asarray(sources)
    names, counts = np.unique(sources, return_counts=True)
    small = [str(n) for n, c in zip(names, counts) if c < min_works]
    groups = {str(n): sources == n for n, c in zip(names, counts) if c >= min_works}
    if len(small) == 1:
        groups[small[0]] = sources == small[0]
    elif small:
        groups[f"pooled: {', '.join(small)}"] = np.isin(sources, small)
    return groups


def choose_threshold(human: Sequence[np.ndarray], mimicry: Sequence[np.ndarray], sources: np.ndarray, *,
                     max_fpr: float = 0.01, rule: str = "per-source", min_works: int = 0,
                     at: str = "gap-top", keep_tpr: float = 0.0) -> dict:
    """The ``ai_mimicry`` threshold for scores of human works known to be human (and, where known, of mimicry).

    ``human``: one array of calibrated scores per condition (clean first, then each perturbation), each
    aligned with ``sources`` (the kind of human art of each work); every perturbed copy counts as one more
    work held to the bound. ``mimicry``: the same for mimicry images (may be empty arrays): the threshold is
    placed in the gap above the admissible range (``at``: its top, the lowest clean mimicry score there, or
    its logit midpoint); with none, at the lowest admissible threshold.

    ``rule="pooled"`` holds at most ``max_fpr`` of all human works flagged; ``"per-source"`` also holds each
    group of :func:`threshold_groups` (sources of fewer than ``min_works`` works pooled) and takes the
    highest. ``keep_tpr`` > 0 then raises the threshold up to :func:`keep_tpr_threshold` of the clean
    mimicry scores, never lowering it: the human bound stays held, and the room above it that the mimicry
    scores leave goes to human works of kinds that were never in ``human``. Returns ``{"threshold", "pooled",
    "per-source", "keep_tpr", "per_source": {source: {n, threshold}}, "groups": {group: {n, threshold}}}``
    (``keep_tpr``: the raised-to threshold, or None; thresholds of the groups are the lowest admissible ones)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if at not in PLACEMENTS:
        raise ValueError(f"at must be one of {PLACEMENTS}, got {at!r}")
    sources = np.asarray(sources)
    human = [np.asarray(h) for h in human]
    if not human or any(len(h) != len(sources) for h in human):
        raise ValueError("each array of human scores must have one score per source entry")
    mimicry = [np.asarray(m, dtype=np.float64) for m in mimicry] or [np.zeros(0)]
    all_human = np.concatenate(human)
    if at == "gap-top":
        pooled = gap_top_threshold(all_human, mimicry[0], max_fpr)
    else:
        pooled = max_margin_threshold(all_human, np.concatenate(mimicry), max_fpr)

    def held(mask: np.ndarray) -> dict:
        return {"n": int(mask.sum()),
                "threshold": threshold_at_fpr(np.concatenate([h[mask] for h in human]), max_fpr)}

    per_source = {str(s): held(sources == s) for s in sorted(set(sources.tolist()))}
    # A group of one source is that source's entry, already held.
    groups = {g: per_source[g] if g in per_source else held(mask)
              for g, mask in threshold_groups(sources, min_works).items()}
    source_low = max(v["threshold"] for v in groups.values())
    above = mimicry[0][mimicry[0] >= source_low]
    per_source_thr = max(pooled, float(above.min()) if len(above) and at == "gap-top" else source_low)
    threshold = per_source_thr if rule == "per-source" else pooled
    kept = None
    if keep_tpr:
        if not len(mimicry[0]):
            raise ValueError("keep_tpr needs clean mimicry scores")
        kept = keep_tpr_threshold(mimicry[0], keep_tpr)
        threshold = max(threshold, kept)
    return {"threshold": threshold, "pooled": pooled, "per-source": per_source_thr, "keep_tpr": kept,
            "per_source": per_source, "groups": groups}
