"""The one model resolver (path, then $MIMICRY_MODELS/<name>, then bundled) and the per-user data folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mimicry.detector.bundle import ModelBundle, ModelError
from mimicry.detector.locations import (bundled_models, bundled_models_dir, data_dir, is_name,
                                        resolve_model_dir)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("MIMICRY_MODELS", raising=False)
    monkeypatch.delenv("MIMICRY_HOME", raising=False)


def test_bundled_models_are_the_detector_and_the_style_encoder():
    assert bundled_models_dir() == REPO / "models"  # in a checkout; mimicry/models/ in a wheel
    assert {"default", "style-encoder"} <= set(bundled_models())
    assert "tiny-sd-clipart" not in bundled_models()  # a diffusers folder, not a model.json directory


def test_a_name_resolves_to_the_bundled_copy_from_any_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("default") == REPO / "models" / "default"
    assert resolve_model_dir("style-encoder") == REPO / "models" / "style-encoder"
    assert ModelBundle.from_dir("default").path == REPO / "models" / "default"


def test_an_existing_path_comes_first(monkeypatch, tmp_path, model_dir):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(model_dir, tmp_path / "default")  # a folder named like the bundled model
    assert resolve_model_dir("default") == Path("default")
    assert ModelBundle.from_dir("default").name == "tiny-test"
    assert resolve_model_dir(model_dir) == model_dir


def test_a_folder_named_like_a_model_but_holding_none_does_not_hide_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # say, a folder of images
    (tmp_path / "default" / "a.png").write_bytes(b"")
    assert resolve_model_dir("default") == REPO / "models" / "default"
    (tmp_path / "mine").mkdir()  # a name found nowhere else: the error says why the folder here did not count
    with pytest.raises(ModelError, match="no model.json in that directory"):
        resolve_model_dir("mine")


def test_mimicry_models_comes_before_the_bundled_copy(monkeypatch, tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path / "store" / "default")
    shutil.copytree(model_dir, tmp_path / "store" / "mine")
    monkeypatch.setenv("MIMICRY_MODELS", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("default") == tmp_path / "store" / "default"
    assert ModelBundle.from_dir("mine").name == "tiny-test"
    assert resolve_model_dir("style-encoder") == REPO / "models" / "style-encoder"  # not there: bundled


def test_an_unknown_name_says_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as e:
        resolve_model_dir("nope")
    msg = str(e.value)
    assert "'nope' not found" in msg and str(tmp_path / "nope") in msg
    assert "$MIMICRY_MODELS is not set" in msg and "the bundled models (default, " in msg and "style-encoder" in msg
    monkeypatch.setenv("MIMICRY_MODELS", str(tmp_path / "store"))
    with pytest.raises(ModelError, match="store/nope .no such directory"):
        ModelBundle.from_dir("nope")


def test_a_path_is_never_replaced_by_the_bundled_model(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # models/default does not exist here
    assert not is_name("models/default") and not is_name("./default") and is_name("default")
    with pytest.raises(ModelError, match="model directory not found: models/default"):
        ModelBundle.from_dir("models/default")


def test_data_dir_is_mimicry_home_or_the_platform_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MIMICRY_HOME", str(tmp_path / "h"))
    assert data_dir() == tmp_path / "h"
    monkeypatch.delenv("MIMICRY_HOME")
    from platformdirs import user_data_dir

    assert data_dir() == Path(user_data_dir("mimicry", appauthor=False))


def test_detector_and_style_encoder_default_are_the_bundled_ones(monkeypatch, tmp_path):
    from mimicry.detector import Detector
    from mimicry.detector.style import StyleEncoder

    monkeypatch.chdir(tmp_path)
    det = Detector.default(intra_op_threads=1)
    assert det.bundle.path == REPO / "models" / "default"
    assert StyleEncoder.default(intra_op_threads=1).path == REPO / "models" / "style-encoder"
