"""The verdict: one per image, the same shape in Python, CLI rows and JSON bodies."""

from __future__ import annotations

import dataclasses

from .calibration import LABELS

# Why a verdict's label is what it is, as a scan row says it (:func:`label_reason`). The first three
# are the model's score alone; evidence["label_reason"] values other than "model-score" (such as
# "declared-ai-by-metadata") pass through unchanged.
SCORE_AT_OR_ABOVE_THRESHOLD = "score-at-or-above-threshold"
SCORE_IN_UNCERTAIN_BAND = "score-in-uncertain-band"
SCORE_BELOW_UNCERTAIN_BAND = "score-below-uncertain-band"
_BAND_REASONS = {"ai-mimicry": SCORE_AT_OR_ABOVE_THRESHOLD, "uncertain": SCORE_IN_UNCERTAIN_BAND,
                 "human": SCORE_BELOW_UNCERTAIN_BAND}


@dataclasses.dataclass
class Verdict:
    """What the detector says about one image.

    ``score`` is the calibrated probability of AI mimicry and ``label`` its band (one of
    ``"human"``, ``"uncertain"``, ``"ai-mimicry"``); ``threshold`` is the score at which the model
    says "ai-mimicry". An image that could not be read is data too: ``score`` and ``label`` are
    None and ``error``/``error_code`` say why (codes from ``mimicry.detector.decode.ERROR_CODES``).

    ``evidence`` of a scored image: ``logit`` (raw model output), ``model_trained_on``,
    ``provenance`` (the file's metadata signals, ``mimicry.detector.provenance.Signal.to_dict()`` each;
    absent when they were not read), ``model_label`` (the band of ``score`` alone) and
    ``label_reason``: ``"model-score"``, or ``"declared-ai-by-metadata"`` when the file declares
    itself AI-made and that, not the score, makes the label ``ai-mimicry``. With attribution (a
    detector given an :class:`~detector.attribution.Attribution`, while anyone is enrolled) also
    ``artists`` and ``copy_of``, shaped as :class:`~detector.attribution.Evidence` says. An animated
    GIF, WebP or PNG also has ``frames``: ``{"rule": "mean-logit", "count", "reached", "scored", "logits",
    "scores"}``, the frames scored (0-based) and each one's logit and calibrated score; ``logit`` is then
    the mean of the frames' logits and ``score`` that mean calibrated (``mimicry.detector.detector.frame_logit``).
    ``count`` is the frames in the file (None for a GIF longer than the ``reached`` frames the decoder's
    pixel budget lets it read); a still image has no ``frames``.
    """

    source: str
    score: float | None
    label: str | None
    threshold: float | None
    model: str | None
    model_version: str | None
    error: str | None = None
    error_code: str | None = None
    evidence: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")

    @property
    def ok(self) -> bool:
        """True when the image was scored (no error)."""
        return self.error is None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (``evidence`` copied)."""
        return dataclasses.asdict(self)


def label_reason(v: Verdict) -> str | None:
    """Why ``v`` has its label, in one word; None for an error verdict (it has no label).

    ``evidence["label_reason"]`` says whether the score or something else set the label; when it
    was the score (``"model-score"``, also assumed when the evidence does not say), this names the
    band: :data:`SCORE_AT_OR_ABOVE_THRESHOLD` (ai-mimicry), :data:`SCORE_IN_UNCERTAIN_BAND` or
    :data:`SCORE_BELOW_UNCERTAIN_BAND` (human). Any other reason, such as
    ``"declared-ai-by-metadata"``, is returned as it is.
    """
    if v.label is None:
        return None
    reason = v.evidence.get("label_reason") or "model-score"
    return _BAND_REASONS[v.label] if reason == "model-score" else reason


def signal_names(v: Verdict) -> list[str] | None:
    """The names (``signal``) of the provenance signals in ``v``'s evidence, each once, in the order
    found: ``[]`` when the file's metadata says nothing, None when it was not read (an error verdict,
    or a detector made with ``provenance=False``)."""
    signals = v.evidence.get("provenance")
    if signals is None:
        return None
    return list(dict.fromkeys(s["signal"] if isinstance(s, dict) else s.signal for s in signals))


def frames_scored(v: Verdict) -> int | None:
    """How many frames of an animation ``v``'s score is the mean over (``evidence["frames"]``, the rule
    in :class:`Verdict`); None for a still image or an error."""
    frames = v.evidence.get("frames")
    return len(frames["scored"]) if frames else None
