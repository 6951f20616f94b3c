"""Fixtures for the reliability tests: the hostile corpus, made once per session."""

from __future__ import annotations

import pytest
from hostile_files import make_corpus  # tests/reliability is on sys.path (rootdir-style tests)
from reliability_fixtures import ServeProcess


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, make_corpus(folder)


@pytest.fixture
def server(tmp_path):
    srv = ServeProcess(tmp_path).wait_ready()
    yield srv.url, srv.proc
    srv.stop()
