"""Fixtures for the service: the real bundled model, a TestClient, and a live uvicorn server.
Helpers are in ``service_fixtures.py`` (tests/service is on sys.path, rootdir-style)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_fixtures import EXAMPLES, MODEL, LiveServer

from mimicry.service.app import create_app
from mimicry.service.settings import Settings


@pytest.fixture
def make_settings(tmp_path):
    def make(**overrides) -> Settings:
        values = {"model_dir": MODEL, "keys_db": tmp_path / "keys.sqlite3", "intra_op_threads": 1,
                  "decode_workers": 2, **overrides}
        return Settings(**values)

    return make


@pytest.fixture
def client(make_settings):
    with TestClient(create_app(make_settings())) as c:
        yield c


@pytest.fixture(scope="session")
def example_bytes() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in EXAMPLES]


@pytest.fixture
def live_server(make_settings):
    def start(**overrides) -> LiveServer:
        return LiveServer(create_app(make_settings(**overrides)))

    return start
