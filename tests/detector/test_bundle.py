"""Model directories: what loads, what is refused and with which message; calibration and bands."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mimicry.detector.bundle import ModelBundle, ModelError, file_sha256, write_model_json
from mimicry.detector.calibration import Calibration, Thresholds
from detector_fixtures import TRAINED_ON, make_model_dir, tiny_card, tiny_onnx


def rewrite_card(model_dir, **changes):
    """Edit model.json directly (bypassing write_model_json's checks), as a hand edit would."""
    card = json.loads((model_dir / "model.json").read_text())
    card.update(changes)
    (model_dir / "model.json").write_text(json.dumps(card))
    return card


@pytest.fixture
def copy(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "m")


def test_a_good_directory_loads(model_dir):
    b = ModelBundle.from_dir(model_dir)
    assert (b.name, b.version, b.input_name, b.output_name) == ("tiny-test", "0.0.1", "input", "logit")
    assert b.preprocess.size == 32 and b.preprocess.interpolation == "bilinear"
    assert b.trained_on == TRAINED_ON and b.card["onnx_sha256"] == file_sha256(model_dir / "model.onnx")
    assert b.thresholds.ai_mimicry == 0.9 and b.calibration.method == "platt"


def test_missing_directory_and_files(tmp_path, copy):
    with pytest.raises(ModelError, match="model directory not found"):
        ModelBundle.from_dir(tmp_path / "nope")
    (copy / "model.onnx").unlink()
    with pytest.raises(ModelError, match="model.onnx missing"):
        ModelBundle.from_dir(copy)
    (copy / "model.json").unlink()
    with pytest.raises(ModelError, match="model.json missing"):
        ModelBundle.from_dir(copy)


def test_invalid_json(copy):
    (copy / "model.json").write_text('{"format_version": 1,')
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelBundle.from_dir(copy)
    (copy / "model.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="expected a JSON object"):
        ModelBundle.from_dir(copy)


def test_tampered_onnx_is_refused_naming_both_hashes(copy):
    expected = json.loads((copy / "model.json").read_text())["onnx_sha256"]
    tiny_onnx(copy / "model.onnx", weight=-2.0)  # a different, equally valid model
    actual = file_sha256(copy / "model.onnx")
    with pytest.raises(ModelError) as info:
        ModelBundle.from_dir(copy)
    assert actual in str(info.value) and expected in str(info.value) and actual != expected


def test_unsupported_format_version(copy):
    rewrite_card(copy, format_version=2)
    with pytest.raises(ModelError, match="format_version 2 is not supported"):
        ModelBundle.from_dir(copy)


def test_missing_fields_are_all_named(copy):
    card = json.loads((copy / "model.json").read_text())
    del card["input"]["mean"], card["thresholds"]["how_chosen"], card["libraries"]
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="input.mean, thresholds.how_chosen, libraries"):
        ModelBundle.from_dir(copy)


@pytest.mark.parametrize("section,change,match", [
    ("input", {"layout": "NHWC"}, "layout"),
    ("input", {"crop_pct": 0.875}, "unknown preprocessing setting"),
    ("input", {"resize": "pad"}, "resize"),
    ("calibration", {"method": "beta"}, "method"),
    ("calibration", {"method": "platt", "a": -1.0}, "slope"),
    ("calibration", {"method": "isotonic"}, "calibration.x missing"),
    ("thresholds", {"ai_mimicry": 0.2, "human_below": 0.5}, "above"),
])
def test_invalid_sections_are_refused(copy, section, change, match):
    card = json.loads((copy / "model.json").read_text())
    card[section] = {**card[section], **change}
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=match):
        ModelBundle.from_dir(copy)


def test_write_model_json_fills_the_hash_and_checks_the_card(tmp_path):
    d = tmp_path / "m"
    with pytest.raises(ModelError, match="not found"):
        write_model_json(d, tiny_card())
    tiny_onnx(d / "model.onnx")
    card = tiny_card()
    written = write_model_json(d, card)
    assert "onnx_sha256" not in card  # the caller's dict is left alone
    assert json.loads((d / "model.json").read_text()) == written
    assert written["onnx_sha256"] == file_sha256(d / "model.onnx")
    bad = tiny_card()
    del bad["training_data"]
    with pytest.raises(ModelError, match="training_data.trained_on"):
        write_model_json(d, bad)
    assert json.loads((d / "model.json").read_text()) == written  # the good card survives


def test_a_card_shaped_like_training_exports_loads(tmp_path):
    """The extra keys training.export writes (notes, history, opset...) are allowed."""
    card = tiny_card(training={"settings": {}, "history": []}, opset=17, created="2025-01-01T00:00:00Z")
    card["calibration"].update(fit_on="val split", formula="score = 1 / (1 + exp(-(a * logit + b)))")
    card["training_data"].update(manifest="data/demo/manifest.jsonl", split_by="artist")
    ModelBundle.from_dir(make_model_dir(tmp_path / "m", card))


def test_cards_say_what_kind_of_model_they_are(tmp_path, copy):
    """A detector card is written with kind "detector"; a card of another kind is refused with a hint,
    and a card from before ``kind`` existed still loads as a detector."""
    d = tmp_path / "w"
    tiny_onnx(d / "model.onnx")
    assert write_model_json(d, tiny_card())["kind"] == "detector"
    rewrite_card(copy, kind="style-encoder")
    with pytest.raises(ModelError, match="kind is 'style-encoder', not 'detector' .is this a style encoder directory"):
        ModelBundle.from_dir(copy)
    rewrite_card(copy, kind="something")
    with pytest.raises(ModelError, match="kind is 'something', not 'detector'"):
        ModelBundle.from_dir(copy)
    card = json.loads((copy / "model.json").read_text())
    del card["kind"]
    (copy / "model.json").write_text(json.dumps(card))
    assert ModelBundle.from_dir(copy).name == "tiny-test"


def test_the_bundled_style_encoder_is_refused_as_a_detector_and_vice_versa():
    from mimicry.detector.locations import resolve_model_dir
    from mimicry.detector.style import StyleEncoder

    with pytest.raises(ModelError, match="is this a style encoder directory"):
        ModelBundle.from_dir(resolve_model_dir("style-encoder"))
    with pytest.raises(ModelError, match="is this a detector directory"):
        StyleEncoder.from_dir(resolve_model_dir("default"))


# ----------------------------------------------------------------------------- calibration


def test_platt_is_a_monotone_sigmoid_without_overflow():
    cal = Calibration("platt", a=1.5, b=-0.5)
    z = np.linspace(-800, 800, 4001)
    s = cal(z)
    assert np.all(np.diff(s) >= 0) and s[0] == 0.0 and s[-1] == 1.0 and np.isfinite(s).all()
    assert cal(np.array([1 / 3]))[0] == pytest.approx(0.5)


def test_isotonic_is_monotone_and_clamped():
    cal = Calibration.from_dict({"method": "isotonic", "x": [-2, 0, 1, 3], "y": [0.0, 0.2, 0.2, 0.9]})
    s = cal(np.linspace(-10, 10, 1001))
    assert np.all(np.diff(s) >= 0) and s[0] == 0.0 and s[-1] == 0.9
    assert cal(np.array([0.5]))[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration("isotonic", x=(0.0, 1.0), y=(0.8, 0.2))
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration("isotonic", x=(1.0, 1.0), y=(0.1, 0.2))


def test_three_bands():
    t = Thresholds(ai_mimicry=0.8, human_below=0.3)
    assert [t.label(s) for s in (0.0, 0.2999, 0.3, 0.5, 0.7999, 0.8, 1.0)] == [
        "human", "human", "uncertain", "uncertain", "uncertain", "ai-mimicry", "ai-mimicry"]
    assert Thresholds(0.5, 0.5).label(0.4999) == "human"  # no uncertain band when they meet
