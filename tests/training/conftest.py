from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training tests need the train extra")

from tiny_sd import build_tiny_pipeline  # noqa: E402  (tests/tiny_sd.py)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_base") / "pipe")
