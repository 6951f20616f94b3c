"""Hostile and odd inputs through every front door: each gets its documented answer, and the
service stays healthy and the scan finishes the rest."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mimicry.service.app import create_app
from mimicry.service.errors import DECODE_STATUS
from mimicry.service.settings import Settings

from reliability_fixtures import MODEL, rss_mb


@pytest.fixture
def settings(tmp_path):
    return Settings(model_dir=MODEL, keys_db=tmp_path / "keys.sqlite3", intra_op_threads=1)


def test_api_answers_each_hostile_file_as_documented(corpus, settings):
    folder, expected = corpus
    with TestClient(create_app(settings)) as c:
        for name, want in expected.items():
            data = (folder / name).read_bytes()
            t0 = time.monotonic()
            r = c.post("/v1/detect", files={"file": (name, data)})
            assert time.monotonic() - t0 < 10, name
            if want == "ok":
                assert r.status_code == 200, (name, r.text)
                assert r.json()["label"] in ("human", "uncertain", "ai-mimicry")
            else:
                assert r.status_code == DECODE_STATUS[want], (name, r.status_code, r.text)
                assert r.json()["error"]["code"] == want, (name, r.text)
        assert c.get("/readyz").status_code == 200
        # all of them in one batch request: per-item answers, the request itself succeeds
        files = [("files", (n, (folder / n).read_bytes())) for n in list(expected)[:settings.max_batch_items]]
        r = c.post("/v1/detect/batch", files=files)
        assert r.status_code == 200
        got = {x["source"]: (x["error_code"] or "ok") for x in r.json()["results"]}
        assert got == {n: expected[n] for _, (n, _) in files}


def test_cli_scan_gives_each_bad_file_one_error_row_and_finishes(corpus, tmp_path):
    from typer.testing import CliRunner

    from mimicry.cli import app

    folder, expected = corpus
    out = tmp_path / "scan.jsonl"
    # a quoted glob: its matches count as named, so .psd and .eps files are tried too
    r = CliRunner().invoke(app, ["scan", str(folder / "*"), "--model", str(MODEL), "-o", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(row["source"]).name for row in rows) == sorted(expected)  # one row per file
    for row in rows:
        want = expected[Path(row["source"]).name]
        assert (row["error_code"] or "ok") == want, row
    flagged = any(row["label"] == "ai-mimicry" for row in rows)
    assert r.exit_code == (1 if flagged else 3), r.output


def test_a_500_mb_body_is_refused_without_reading_it(server):
    url, proc = server
    port = int(url.rsplit(":", 1)[1])
    rss0 = rss_mb(proc.pid)
    # Declared: the Content-Length alone is enough for a 413, nothing of the body is read.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 524288000\r\n\r\n" + b"\0" * 65536)
        head = b""
        while b'"too_large"' not in head and len(head) < 65536:
            part = s.recv(65536)
            if not part:
                break
            head += part
    assert head.startswith(b"HTTP/1.1 413") and b'"too_large"' in head, head[:300]
    # Streamed with no length: the server stops it once past the cap; the client never gets to send 500 MB.
    sent = 0

    def body():
        nonlocal sent
        chunk = b"\0" * (1 << 20)
        for _ in range(500):
            sent += len(chunk)
            yield chunk

    t0 = time.monotonic()
    try:
        r = httpx.post(url + "/v1/detect", content=body(), headers={"Content-Type": "image/png"}, timeout=60)
        status = r.status_code
        assert r.json()["error"]["code"] == "too_large"
    except httpx.TransportError as exc:
        status = repr(exc)  # the server answered 413 and closed the connection while the client was still sending
    print(f"streamed body: {status}; the client sent {sent >> 20} MB in {time.monotonic() - t0:.1f} s")
    assert httpx.get(url + "/readyz").status_code == 200
    assert rss_mb(proc.pid) - rss0 < 100, "the server must not have buffered the body"
