"""Fixtures for the registry tests: the bundled style encoder, folders of made-up styles, and a
PostgreSQL server started for the session (see pg_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_server import PostgresServer  # tests/registry is on sys.path
from registry_fixtures import ENCODER_DIR, STYLES, write_portfolio


@pytest.fixture(scope="session")
def encoder():
    from mimicry.detector.style import StyleEncoder

    return StyleEncoder.from_dir(ENCODER_DIR, intra_op_threads=1)


@pytest.fixture(scope="session")
def portfolios(tmp_path_factory) -> dict[str, Path]:
    """One folder of 8 works per made-up style."""
    root = tmp_path_factory.mktemp("portfolios")
    return {s: write_portfolio(root / s, s, 8, seed=i).pop().parent for i, s in enumerate(STYLES)}


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "registry.sqlite3"


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server of the session's own, on a free port of 127.0.0.1. Missing server binaries
    or psycopg fail the tests that need it, with what to install: they are not optional here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL tests need psycopg: pip install -e '.[postgres]' (`make venv` does)")
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return pg_server.create_database()
