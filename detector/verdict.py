"""The verdict: one per image, the same shape in Python, CLI rows and JSON bodies."""

from __future__ import annotations

import dataclasses

from .calibration import LABELS


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
    itself AI-made and that, not the score, makes the label ``ai-mimicry``.
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
