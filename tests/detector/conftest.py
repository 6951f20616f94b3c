"""Fixtures for detector tests; the helpers they use are in ``detector_fixtures.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from detector_fixtures import make_model_dir  # tests/detector is on sys.path (rootdir-style tests)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def detector(model_dir):
    from mimicry.detector.detector import Detector

    return Detector.from_dir(model_dir, intra_op_threads=1)
