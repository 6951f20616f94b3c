"""The bundled detectors and examples: what `make demo` runs must load and say what it should.

``models/default`` (1.x) is trained on real AI art and human art of many kinds; ``models/demo-clipart``
(0.2.1) is the demo clip-art model, trained on the project's own tiny generator, kept for the demo's tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimicry.detector import Detector

ROOT = Path(__file__).resolve().parents[2]
CREDITS = [json.loads(x) for x in (ROOT / "examples" / "CREDITS.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def default():
    return Detector.from_dir(ROOT / "models" / "default")


@pytest.fixture(scope="module")
def demo():
    return Detector.from_dir(ROOT / "models" / "demo-clipart")


def test_default_card_says_what_it_was_trained_on_and_how_it_measured(default):
    card = default.bundle.card
    assert card["input"]["size"] == default.config.size and card["input"]["resize"] == "shorter_then_center_crop"
    thresholds = card["thresholds"]
    assert thresholds["rule"] == "per-source"
    # 1.7: val sources of fewer than min_source_works works are held to the bound together; the shipped threshold
    # is at or above every held group's own (docs/eval/realworld_notes.md)
    groups = thresholds["groups_held"]
    assert thresholds["min_source_works"] == 100 and len(groups) >= 2
    assert all(g["n"] >= 100 for g in groups.values())
    assert thresholds["ai_mimicry"] >= max(g["threshold"] for g in groups.values())
    # 1.8: then raised as far as still flags 90% of the val mimicry (artists never trained on), never lowered;
    # 1.10.1: 87.5% (docs/eval/realworld_notes.md)
    assert thresholds["keep_val_tpr"] == 0.875 and thresholds["ai_mimicry"] >= thresholds["keep_val_tpr_threshold"]
    assert card["metrics"]["val"]["tpr_at_threshold"] >= 0.875
    assert card["training"]["settings"]["freeze_blocks"] == 5
    assert card["training"]["settings"]["balance"] == "source"  # the 1.3 recipe (docs/EVALUATION.md)
    data = card["training_data"]
    for phrase in ("Stable Diffusion 1.5", "FLUX.1 [dev]", "Art Institute of Chicago", "Metropolitan Museum of Art",
                   "Book Dash", "Never seen"):
        assert phrase in data["trained_on"]
    sources = data["sources"]
    # 1.10: a second museum's paintings (training.package_art), split by painter as the first museum's are
    assert {"sd15-artist-prompts", "flux1dev-style-of", "aic-paintings", "met-paintings", "bookdash",
            "openclipart"} <= set(sources)
    for entry in sources.values():  # every source names its licences and the repository or package it came from
        assert entry["licences"] and entry["repositories"] and sum(entry["counts"].values()) > 0
    assert sum(data["counts"].values()) == sum(sum(e["counts"].values()) for e in sources.values())
    assert card["metrics"]["onnx_parity_max_abs_logit_diff"] <= 1e-4
    assert card["metrics"]["val"]["fpr_at_threshold"] <= 0.01
    assert card["thresholds"]["human_below"] <= card["thresholds"]["ai_mimicry"]
    ev = card["evaluation"]
    assert ev["report"] == "docs/EVALUATION.md" and ev["threshold"] == card["thresholds"]["ai_mimicry"]
    assert {"clean", "jpeg75", "resize0.5", "grey"} <= set(ev["by_condition"])
    assert {"file facts, as published", "colour statistics"} <= set(ev["shortcut_baselines"])
    assert "tiles" in card["input_policy"]["candidates"]


def test_default_misjudges_no_example(default):
    """What `make demo` shows: the examples' artist is held out of the default's training and calibration, and
    the default learnt the demo's toy generator from two other demo artists' mimicry. No human work is
    flagged, no mimicry is called human, and most of each is given its own label; an example may land in the
    uncertain band (1.3.0: one of each; 1.8.0: one human work, at 0.21; 1.9.0 and 1.10.0: none; the card's demo-clipart figures: 80% of
    that artist's mimicry flagged, 5% of the demo artists' human works uncertain), which is the detector
    declining to answer, not a wrong answer."""
    verdicts = default.predict([str(ROOT / "examples" / c["file"]) for c in CREDITS])
    right = {"ai-mimicry": 0, "human": 0}
    for c, v in zip(CREDITS, verdicts):
        own = "ai-mimicry" if c["label"] == "ai-mimicry" else "human"
        assert v.label in (own, "uncertain"), (c["file"], v.label, v.score)
        right[own] += v.label == own
    for label, n in right.items():
        total = sum((c["label"] == "ai-mimicry") == (label == "ai-mimicry") for c in CREDITS)
        assert n > total / 2, f"only {n} of {total} {label} examples given that label"


def test_demo_model_on_the_bundled_examples(demo):
    assert {c["split"] for c in CREDITS} == {"test"}, "examples must come from data the model never trained on"
    verdicts = demo.predict([str(ROOT / "examples" / c["file"]) for c in CREDITS])
    for c, v in zip(CREDITS, verdicts):
        expected = "ai-mimicry" if c["label"] == "ai-mimicry" else "human"
        assert v.label == expected, (c["file"], v.score)
        assert "not a detector of real Stable Diffusion mimicry" in v.evidence["model_trained_on"]


def test_demo_card_records_the_robustness_choice_and_its_threshold_rule(demo):
    card = demo.bundle.card
    assert "not a detector of real Stable Diffusion mimicry" in card["training_data"]["trained_on"]
    assert card["training"]["settings"]["augment"] == "robust"
    assert "robust" in card["robustness"]["augment"]
    assert card["thresholds"]["placed_at"] == "gap-top"
    assert "val under centre_crop50" in card["thresholds"]["fpr_bound_holds_on"]
    assert card["metrics"]["test"]["auroc"] >= 0.99 and card["metrics"]["test"]["fpr_at_threshold"] == 0.0


def test_evaluation_reports_are_of_the_bundled_models():
    """docs/EVALUATION.md describes models/default; docs/EVALUATION_DEMO.md the demo model; same model files."""
    card = json.loads((ROOT / "models" / "default" / "model.json").read_text())
    report = (ROOT / "docs" / "EVALUATION.md").read_text()
    assert card["onnx_sha256"] in report and f"{card['name']} {card['version']}" in report
    measured = json.loads((ROOT / "docs" / "eval" / "realworld.json").read_text())
    entry = next(iter(measured["models"].values()))  # the first model is the reported one
    assert entry["onnx_sha256"] == card["onnx_sha256"]
    measured_clean = entry["by_perturbation"]["clean"]["pooled"]
    carded = card["evaluation"]["by_condition"]["clean"]["pooled"]
    assert measured_clean.keys() == carded.keys()
    assert all(abs(measured_clean[k] - carded[k]) < 1e-3 for k in carded)  # the card rounds to 4 places
    demo = json.loads((ROOT / "models" / "demo-clipart" / "model.json").read_text())
    demo_report = (ROOT / "docs" / "EVALUATION_DEMO.md").read_text()
    assert demo["onnx_sha256"] in demo_report
    metrics = json.loads((ROOT / "docs" / "eval" / "metrics.json").read_text())["models/default"]
    assert abs(metrics["test/clean"]["auroc"] - demo["metrics"]["test"]["auroc"]) < 1e-3
    for png in ("roc.png", "reliability.png", "score_histograms.png"):
        assert f"](eval/{png})" in demo_report and (ROOT / "docs" / "eval" / png).is_file()
