"""``mimicry.detector.verdict``: why a label is what it is, and the names of the signals behind it."""

from __future__ import annotations

import pytest
from detector_fixtures import encode, solid
from PIL.PngImagePlugin import PngInfo

from mimicry.detector import verdict as verdict_lib
from mimicry.detector.provenance import DECLARED_AI
from mimicry.detector.verdict import Verdict, label_reason, signal_names

A1111 = "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 32x32"


def made(label, evidence=None, score=0.5) -> Verdict:
    return Verdict("x.png", score if label else None, label, 0.9 if label else None, "m", "1",
                   error=None if label else "bad", error_code=None if label else "corrupt", evidence=evidence or {})


@pytest.mark.parametrize("label, reason", [
    ("ai-mimicry", verdict_lib.SCORE_AT_OR_ABOVE_THRESHOLD),
    ("uncertain", verdict_lib.SCORE_IN_UNCERTAIN_BAND),
    ("human", verdict_lib.SCORE_BELOW_UNCERTAIN_BAND),
])
def test_a_label_from_the_score_names_its_band(label, reason):
    assert label_reason(made(label, {"label_reason": "model-score", "model_label": label})) == reason
    assert label_reason(made(label)) == reason  # evidence that does not say: the score set it


def test_other_reasons_pass_through_and_errors_have_none():
    declared = made("ai-mimicry", {"label_reason": DECLARED_AI, "model_label": "human"})
    assert label_reason(declared) == DECLARED_AI
    assert label_reason(made("ai-mimicry", {"label_reason": "some-future-reason"})) == "some-future-reason"
    assert label_reason(made(None)) is None


def test_signal_names_each_once_in_order_none_when_unread():
    sig = lambda name: {"signal": name, "value": "v", "declares_ai": True, "source": "s"}  # noqa: E731
    v = made("ai-mimicry", {"provenance": [sig("png.a1111_parameters"), sig("png.software"),
                                           sig("png.a1111_parameters")]})
    assert signal_names(v) == ["png.a1111_parameters", "png.software"]
    assert signal_names(made("human", {"provenance": []})) == []
    assert signal_names(made("human")) is None
    assert signal_names(made(None)) is None


def test_the_detectors_verdicts_give_reasons_and_signals(detector, model_dir):
    """The helpers read what Detector actually writes into a verdict's evidence."""
    from mimicry.detector.detector import Detector

    info = PngInfo()
    info.add_text("parameters", A1111)
    declared_black = encode(solid("black"), "PNG", pnginfo=info)
    white, black, grey, bad = (encode(solid("white"), "PNG"), encode(solid("black"), "PNG"),
                               encode(solid((128, 128, 128)), "PNG"), b"\x89PNG\r\n\x1a\n broken")
    verdicts = detector.predict([white, black, grey, declared_black, bad])
    got = [(v.label, label_reason(v), signal_names(v)) for v in verdicts]
    assert got == [
        ("ai-mimicry", verdict_lib.SCORE_AT_OR_ABOVE_THRESHOLD, []),
        ("human", verdict_lib.SCORE_BELOW_UNCERTAIN_BAND, []),
        ("uncertain", verdict_lib.SCORE_IN_UNCERTAIN_BAND, []),
        ("ai-mimicry", DECLARED_AI, ["png.a1111_parameters"]),
        (None, None, None),
    ]
    unread = Detector.from_dir(model_dir, intra_op_threads=1, provenance=False).predict(declared_black)[0]
    assert (unread.label, label_reason(unread), signal_names(unread)) == (
        "human", verdict_lib.SCORE_BELOW_UNCERTAIN_BAND, None)
