"""The detector end to end on a real ONNX model: batches, calibration, bands, errors as data."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimicry.detector.bundle import ModelError
from mimicry.detector.detector import Detector, default_providers
from mimicry.detector.verdict import Verdict
from detector_fixtures import TRAINED_ON, encode, make_model_dir, png_bomb_header, solid, tiny_card


def test_session_is_set_up_as_asked(detector):
    assert detector.session.get_providers()[-1] == "CPUExecutionProvider"
    assert default_providers()[-1] == "CPUExecutionProvider"
    assert (detector.input_name, detector.output_name) == ("input", "logit")


def test_predict_arrays_gives_one_logit_per_row(detector):
    x = np.stack([np.ones((3, 32, 32), np.float32), -np.ones((3, 32, 32), np.float32)])
    np.testing.assert_allclose(detector.predict_arrays(x), [6.0, -6.0], rtol=1e-6)
    assert detector.predict_arrays(np.zeros((0, 3, 32, 32), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        detector.predict_arrays(np.zeros((2, 3, 16, 16), np.float32))


def test_three_bands_from_known_logits(detector):
    white, black, grey = detector.predict([solid("white"), solid("black"), solid((128, 128, 128))])
    assert (white.label, black.label, grey.label) == ("ai-mimicry", "human", "uncertain")
    assert white.score == pytest.approx(1 / (1 + np.exp(-6)), rel=1e-5)
    assert white.threshold == 0.9 and white.evidence["logit"] == pytest.approx(6.0, rel=1e-5)


def test_mixed_good_and_bad_sources_give_one_verdict_each_in_order(detector, tmp_path):
    (tmp_path / "white.png").write_bytes(encode(solid("white"), "PNG"))
    (tmp_path / "empty.png").write_bytes(b"")
    sources = [tmp_path / "white.png", b"not an image", encode(solid("black"), "JPEG"), tmp_path / "empty.png",
               np.full((40, 56, 3), 255, np.uint8), png_bomb_header(), str(tmp_path / "missing.png"),
               solid((128, 128, 128))]
    verdicts = detector.predict(sources, batch_size=3)
    assert [v.source for v in verdicts] == [
        str(tmp_path / "white.png"), "<bytes #1>", "<bytes #2>", str(tmp_path / "empty.png"), "<array #4>",
        "<bytes #5>", str(tmp_path / "missing.png"), "<image #7>"]
    assert [v.label for v in verdicts] == ["ai-mimicry", None, "human", None, "ai-mimicry", None, None, "uncertain"]
    assert [v.error_code for v in verdicts] == [None, "unsupported_format", None, "empty", None, "too_many_pixels",
                                                "not_found", None]
    for v in verdicts:
        assert v.model == "tiny-test" and v.model_version == "0.0.1"
        assert v.evidence["model_trained_on"] == TRAINED_ON  # every verdict says what the model knows
        assert (v.score is None) == (v.error is not None) == (v.label is None)


def test_a_single_source_is_accepted(detector):
    [v] = detector.predict(solid("black"))
    assert v.label == "human"
    [v] = detector.predict(np.zeros((40, 40, 3), np.uint8))
    assert v.label == "human"


def test_stream_with_workers_matches_in_line_decoding(detector):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(11)]
    images[4] = b"\x89PNG\r\n\x1a\n broken"
    inline = [v.to_dict() for v in detector.stream(images, batch_size=4, workers=0)]
    threaded = [v.to_dict() for v in detector.stream(images, batch_size=4, workers=2)]
    assert inline == threaded and len(inline) == 11 and inline[4]["error_code"] == "corrupt"


def test_stream_is_lazy(detector):
    def endless():
        while True:
            yield solid("white")

    stream = detector.stream(endless(), batch_size=2, workers=1)
    assert [next(stream).label for _ in range(5)] == ["ai-mimicry"] * 5
    stream.close()  # stops the pool without draining an endless input


def test_verdict_to_dict_is_json_ready(detector):
    [v] = detector.predict(solid("white"))
    d = json.loads(json.dumps(v.to_dict()))
    assert d["label"] == "ai-mimicry" and set(d) == {
        "source", "score", "label", "threshold", "model", "model_version", "error", "error_code", "evidence"}
    with pytest.raises(ValueError, match="label"):
        Verdict("x", 0.5, "fake", 0.5, "m", "1")


def test_isotonic_calibration_through_the_detector(tmp_path):
    card = tiny_card(calibration={"method": "isotonic", "x": [-6, 0, 6], "y": [0.0, 0.5, 1.0]})
    det = Detector.from_dir(make_model_dir(tmp_path / "iso", card), intra_op_threads=1)
    scores = [v.score for v in det.predict([solid("black"), solid((128, 128, 128)), solid("white")])]
    assert scores[0] == pytest.approx(0.0, abs=1e-6) and scores[2] == pytest.approx(1.0, abs=1e-6)
    assert scores[0] < scores[1] < scores[2]


def test_card_and_graph_must_agree(tmp_path):
    with pytest.raises(ModelError, match="graph's input is 'pixels'"):
        Detector.from_dir(make_model_dir(tmp_path / "a", input_name="pixels"))
    with pytest.raises(ModelError, match="outputs are"):
        Detector.from_dir(make_model_dir(tmp_path / "b", output_name="score"))
    with pytest.raises(ModelError, match="does not take"):
        Detector.from_dir(make_model_dir(tmp_path / "c", size=16))  # card says 32


def test_an_unloadable_graph_is_a_model_error(model_dir, tmp_path):
    d = shutil.copytree(model_dir, tmp_path / "m")
    (d / "model.onnx").write_bytes(b"not a protobuf")
    card = json.loads((d / "model.json").read_text())
    from mimicry.detector.bundle import write_model_json

    write_model_json(d, card)  # the hash now matches, so onnxruntime gets to refuse it
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        Detector.from_dir(d)


def test_detector_package_never_imports_torch():
    """detector/ is the light inference path: numpy + Pillow + onnxruntime only."""
    banned = {"torch", "torchvision", "timm", "diffusers", "transformers", "mimicry.training", "mimicry.service",
              "mimicry.cli"}
    root = Path(__file__).resolve().parents[2] / "detector"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert not any(name == b or name.startswith(b + ".") for b in banned), f"{path.name} imports {name}"


@pytest.mark.parametrize("size", [(1, 1), (31, 400), (400, 20)])
def test_images_too_small_for_a_verdict_are_an_error_not_a_score(detector, size):
    """A 1 x 1 image used to come back "human 0.005"; under MIN_SIDE a side it is an error row."""
    from mimicry.detector.decode import MIN_SIDE

    tiny = Image.new("RGB", size, (120, 80, 40))
    [v] = detector.predict(tiny)
    assert v.label is None and v.error_code == "too_small" and str(MIN_SIDE) in v.error
    [ok] = detector.predict(Image.new("RGB", (MIN_SIDE, MIN_SIDE), (120, 80, 40)))
    assert ok.error_code is None and ok.label is not None
