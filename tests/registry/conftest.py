"""Fixtures for the registry tests: the bundled style encoder, folders of made-up styles."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_fixtures import ENCODER_DIR, STYLES, write_portfolio  # tests/registry is on sys.path


@pytest.fixture(scope="session")
def encoder():
    from detector.style import StyleEncoder

    return StyleEncoder.from_dir(ENCODER_DIR, intra_op_threads=1)


@pytest.fixture(scope="session")
def portfolios(tmp_path_factory) -> dict[str, Path]:
    """One folder of 8 works per made-up style."""
    root = tmp_path_factory.mktemp("portfolios")
    return {s: write_portfolio(root / s, s, 8, seed=i).pop().parent for i, s in enumerate(STYLES)}


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "registry.sqlite3"
