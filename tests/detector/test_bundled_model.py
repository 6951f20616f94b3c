"""The bundled detector and examples: what `make demo` runs must load and say what it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimicry.detector import Detector

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundled():
    return Detector.from_dir(ROOT / "models" / "default")


def test_bundled_model_card_is_complete_and_honest(bundled):
    card = bundled.bundle.card
    assert card["input"]["size"] == bundled.config.size
    assert "not a detector of real Stable Diffusion mimicry" in card["training_data"]["trained_on"]
    assert card["metrics"]["onnx_parity_max_abs_logit_diff"] <= 1e-4
    assert card["metrics"]["val"]["fpr_at_threshold"] <= 0.01
    assert card["thresholds"]["human_below"] <= card["thresholds"]["ai_mimicry"]
    assert "input_policy" in card


def test_bundled_model_on_the_bundled_examples(bundled):
    credits = [json.loads(x) for x in (ROOT / "examples" / "CREDITS.jsonl").read_text().splitlines()]
    assert {c["split"] for c in credits} == {"test"}, "examples must come from data the model never trained on"
    verdicts = bundled.predict([str(ROOT / "examples" / c["file"]) for c in credits])
    for c, v in zip(credits, verdicts):
        expected = "ai-mimicry" if c["label"] == "ai-mimicry" else "human"
        assert v.label == expected, (c["file"], v.score)
        assert "not a detector of real Stable Diffusion mimicry" in v.evidence["model_trained_on"]


def test_bundled_card_records_the_robustness_choice_and_its_threshold_rule(bundled):
    card = bundled.bundle.card
    assert card["training"]["settings"]["augment"] == "robust"
    assert "robust" in card["robustness"]["augment"] and card["robustness"]["report"] == "docs/EVALUATION.md"
    assert card["thresholds"]["placed_at"] == "gap-top"
    assert "val under centre_crop50" in card["thresholds"]["fpr_bound_holds_on"]
    assert card["metrics"]["test"]["auroc"] >= 0.99 and card["metrics"]["test"]["fpr_at_threshold"] == 0.0


def test_evaluation_report_is_of_the_bundled_model():
    """docs/EVALUATION.md must describe the model that ships: same model file, same test figures."""
    card = json.loads((ROOT / "models" / "default" / "model.json").read_text())
    report = (ROOT / "docs" / "EVALUATION.md").read_text()
    assert card["onnx_sha256"] in report
    metrics = json.loads((ROOT / "docs" / "eval" / "metrics.json").read_text())["models/default"]
    assert abs(metrics["test/clean"]["auroc"] - card["metrics"]["test"]["auroc"]) < 1e-3
    assert metrics["test/clean"]["fpr_at_threshold"] == card["metrics"]["test"]["fpr_at_threshold"]
    for png in ("roc.png", "reliability.png", "score_histograms.png"):
        assert f"](eval/{png})" in report and (ROOT / "docs" / "eval" / png).is_file()
