"""The service over real sockets: a bounded load test, overload behaviour, and `mimicry serve`."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from service_fixtures import EXAMPLES, MODEL, jpeg_bytes


async def _fire(url: str, bodies: list[bytes], concurrency: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(body: bytes) -> httpx.Response:
            async with sem:
                return await client.post("/v1/detect", content=body, headers={"Content-Type": "image/jpeg"})

        return await asyncio.gather(*(one(b) for b in bodies))


def test_bounded_load_has_no_unexpected_errors_and_batches(live_server):
    bodies = [jpeg_bytes((1000, 1000), seed=i) for i in range(8)] * 20  # 160 one-megapixel JPEGs
    with live_server(batch_max_size=16, batch_max_wait_ms=5, queue_max=256) as srv:
        responses = asyncio.run(_fire(srv.url, bodies, concurrency=16))
        metrics = httpx.get(srv.url + "/metrics").text
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: len(bodies)}, statuses
    scores = {}
    for body, r in zip(bodies, responses):  # the same image always gets the same score, batched or not
        scores.setdefault(body, set()).add(round(r.json()["score"], 5))
    assert all(len(s) == 1 for s in scores.values())
    count = float(re.search(r"^mimicry_batch_size_count (\S+)$", metrics, re.M).group(1))
    total = float(re.search(r"^mimicry_batch_size_sum (\S+)$", metrics, re.M).group(1))
    assert total == len(bodies)
    assert count < len(bodies), "concurrent requests should share onnxruntime calls"


def test_overload_answers_503_with_retry_after_not_timeouts(live_server):
    bodies = [jpeg_bytes((800, 800), seed=i) for i in range(48)]
    with live_server(batch_max_size=1, batch_max_wait_ms=0, queue_max=2, retry_after_s=3) as srv:
        t0 = time.monotonic()
        responses = asyncio.run(_fire(srv.url, bodies, concurrency=48))
        elapsed = time.monotonic() - t0
        healthy = httpx.get(srv.url + "/readyz").status_code
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 503} and statuses[503] > 0 and statuses[200] > 0, statuses
    for r in responses:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "3"
            assert r.json()["error"]["code"] == "overloaded"
    assert elapsed < 30 and healthy == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll /readyz until the server answers 200; fail with its output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.2)


def test_mimicry_serve_starts_and_answers(tmp_path, example_bytes):
    port = _free_port()
    env = {**os.environ, "MIMICRY_KEYS_DB": str(tmp_path / "keys.sqlite3"), "MIMICRY_INTRA_OP_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mimicry", "serve", "--model", str(MODEL), "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, timeout=60)
        name, data = example_bytes[0]
        r = httpx.post(url + "/v1/detect", files={"file": (name, data)})
        assert r.status_code == 200 and r.json()["source"] == name
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_mimicry_serve_refuses_a_bad_model_before_binding(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mimicry", "serve", "--model", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "error:" in r.stderr and str(tmp_path) in r.stderr


@pytest.mark.parametrize("env, args, says", [
    ({"MIMICRY_REGISTRY": str(EXAMPLES[0])}, [], "error: registry:"),  # an image is no registry
    ({"MIMICRY_STYLE_ENCODER_DIR": "no-such-encoder"}, [], "error: style encoder:"),
    ({}, ["--log-level", "bogus"], "--log-level must be one of"),
])
def test_mimicry_serve_refuses_a_bad_encoder_registry_or_log_level_in_one_line(tmp_path, env, args, says):
    r = subprocess.run([sys.executable, "-m", "mimicry", "serve", "--model", str(MODEL), *args], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "MIMICRY_HOME": str(tmp_path), **env})
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_keys_cli_create_list_revoke(tmp_path):
    from typer.testing import CliRunner

    from mimicry.cli import app
    from mimicry.service.keys import KeyStore

    db = tmp_path / "k.sqlite3"
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "platform B", "--db", str(db)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("mk_")
    info = KeyStore(db).verify(key)
    assert info is not None and info.name == "platform B"
    listed = runner.invoke(app, ["keys", "list", "--db", str(db)])
    assert info.id in listed.stdout and "active" in listed.stdout and key not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", info.id, "--db", str(db)]).exit_code == 0
    assert KeyStore(db).verify(key) is None
    assert "revoked" in runner.invoke(app, ["keys", "list", "--db", str(db)]).stdout
    again = runner.invoke(app, ["keys", "revoke", info.id, "--db", str(db)])
    assert again.exit_code == 2  # a usage error, as elsewhere
    assert runner.invoke(app, ["keys", "create", "  ", "--db", str(db)]).exit_code == 2


def test_mimicry_serve_with_several_workers(tmp_path, example_bytes):
    port = _free_port()
    env = {**os.environ, "MIMICRY_KEYS_DB": str(tmp_path / "keys.sqlite3"), "MIMICRY_INTRA_OP_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mimicry", "serve", "--model", str(MODEL), "--port", str(port),
                             "--workers", "2", "--batch-max-size", "4", "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, timeout=90)
        bodies = [d for _, d in example_bytes] * 4
        responses = asyncio.run(_fire_png(url, bodies, concurrency=8))
        assert {r.status_code for r in responses} == {200}
        # the option reached every worker through the environment: no batch is over 4
        metrics = httpx.get(url + "/metrics").text
        assert re.search(r'^mimicry_batch_size_bucket\{le="4.0"\} (\S+)$', metrics, re.M)
        buckets = dict(re.findall(r'^mimicry_batch_size_bucket\{le="([^"]+)"\} (\S+)$', metrics, re.M))
        assert buckets["4.0"] == buckets["+Inf"]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


async def _fire_png(url: str, bodies: list[bytes], concurrency: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(body: bytes) -> httpx.Response:
            async with sem:
                return await client.post("/v1/detect", content=body, headers={"Content-Type": "image/png"})

        return await asyncio.gather(*(one(b) for b in bodies))
