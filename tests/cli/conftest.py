"""Fixtures for the command line's own contracts: the detector tests' tiny model, whose verdicts
are known in advance (white: ai-mimicry, black: human), so no test here depends on the bundled one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detector"))  # detector_fixtures: the tiny model

from detector_fixtures import encode, make_model_dir, solid  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """One image per outcome: flagged, not flagged, unreadable."""
    d = tmp_path / "images"
    d.mkdir()
    paths = {"flagged": d / "white.png", "clean": d / "black.png", "broken": d / "broken.png"}
    paths["flagged"].write_bytes(encode(solid("white", (48, 48)), "PNG"))
    paths["clean"].write_bytes(encode(solid("black", (48, 48)), "PNG"))
    paths["broken"].write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return paths
