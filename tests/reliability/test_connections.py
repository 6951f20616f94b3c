"""Connections of a live `mimicry serve`: keep-alive longer than a proxy's, half-sent headers closed,
a connection limit, and no storm of tracebacks when file descriptors run short."""

from __future__ import annotations

import http.client
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from reliability_fixtures import MODEL, ROOT, ServeProcess, free_port

HALF_SENT = b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nX-Slow: "


class LoggedServe(ServeProcess):
    """`mimicry serve` as ServeProcess starts it, with its output in a file and optionally a lower
    limit on open files (set in the child before it starts: soft and hard)."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None, nofile: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "serve.log"
        full_env = {"MIMICRY_KEYS_DB": str(tmp / "keys.sqlite3"), "MIMICRY_INTRA_OP_THREADS": "1",
                    "PATH": "/usr/bin:/bin", "HOME": str(tmp), **(env or {})}

        def limit_files():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mimicry", "serve", "--model", str(MODEL),
                                          "--port", str(self.port), "--log-level", "warning", *args],
                                         env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=limit_files)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(*args, **kwargs) -> LoggedServe:
        srv = LoggedServe(tmp_path, *args, **kwargs)
        started.append(srv)
        return srv.wait_ready()

    yield start
    for srv in started:
        srv.stop()


def _half_sent(port: int, n: int) -> list[socket.socket]:
    """n connections that send the start of a request's headers, never the end."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(HALF_SENT)
        except OSError:  # refused at once (past the connection limit): still ours to close
            pass
        socks.append(s)
    return socks


def _is_open(sock: socket.socket) -> bool:
    """The server has neither closed sock nor answered on it (a 408 or 503 comes before a close)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"" (closed) or the start of an answer
    except BlockingIOError:
        return True
    except OSError:  # reset
        pass
    return False


def _still_open(socks: list[socket.socket], deadline: float) -> int:
    """How many of socks the server still holds at deadline (checked early: returns 0 as soon as none)."""
    while True:
        n = sum(_is_open(s) for s in socks)
        if n == 0 or time.monotonic() >= deadline:
            return n
        time.sleep(0.1)


def _healthz_latency(url: str) -> float:
    t0 = time.monotonic()
    assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    return time.monotonic() - t0


def test_keep_alive_connections_survive_client_pauses_longer_than_5_s(serve):
    """Defaults: a client (or a proxy, whose idle timeout is often 60 s) that reuses a connection after
    5-7 s finds it open. http.client does not retry, so a connection the server closed is an error."""
    srv = serve()

    def client(i: int) -> tuple[int, int, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
            port_before = conn.sock.getsockname()[1]
            time.sleep(5.2 + 0.1 * i)  # 5.2 .. 6.7 s
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            return port_before, conn.sock.getsockname()[1], None
        except (OSError, http.client.HTTPException) as exc:  # RemoteDisconnected, reset, broken pipe
            return 0, 0, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(16)))
    errors = [e for _, _, e in results if e]
    assert not errors, f"{len(errors)} of 16 connections closed under a request after a pause: {errors[:3]}"
    assert all(a == b for a, b, _ in results)  # the same connection both times


def test_half_sent_headers_are_closed_and_do_not_stop_healthz(serve):
    """240 connections that never finish their headers: /healthz answers quickly meanwhile, each is
    closed after the header timeout, and the log stays small (no per-connection tracebacks)."""
    srv = serve(env={"MIMICRY_HEADER_TIMEOUT_S": "2"})
    t0 = time.monotonic()
    socks = _half_sent(srv.port, 240)
    try:
        latencies = []
        while time.monotonic() - t0 < 1.5:  # all 240 are held meanwhile
            latencies.append(_healthz_latency(srv.url))
            time.sleep(0.1)
        open_early = _still_open(socks, 0)
        deadline = t0 + 2 + 5  # generous: the CPUs may be shared with other work
        held = _still_open(socks, deadline)
        closed_after = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    print(f"\nslow headers: /healthz max {max(latencies) * 1000:.0f} ms over {len(latencies)} requests; "
          f"{open_early} of 240 open at {1.5:.1f} s, {held} at {closed_after:.1f} s; log {len(srv.log())} bytes")
    assert max(latencies) < 1.0, latencies
    assert open_early == 240  # closed by the timeout, not at once
    assert held == 0, f"{held} of 240 half-sent connections still open {closed_after:.0f} s later"
    log = srv.log()
    assert "Traceback" not in log and len(log) < 4000, log[-2000:]
    assert _healthz_latency(srv.url) < 1.0


def test_past_the_file_descriptor_limit_the_server_refuses_quietly_and_recovers(serve):
    """A process limited to 256 open files and 400 half-sent connections: the connection limit stays
    under the file limit, so accept() never fails (which used to log a traceback per failed accept,
    thousands a second); /healthz answers again once the header timeout has freed the slots."""
    srv = serve(env={"MIMICRY_HEADER_TIMEOUT_S": "2"}, nofile=256)
    peak = srv.open_fds()
    t0 = time.monotonic()
    socks = _half_sent(srv.port, 400)
    flood_s = time.monotonic() - t0
    try:
        healthy_after = None
        while time.monotonic() - t0 < flood_s + 10:
            peak = max(peak, srv.open_fds())
            try:
                if httpx.get(srv.url + "/healthz", timeout=2).status_code == 200:
                    healthy_after = time.monotonic() - t0
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    finally:
        for s in socks:
            s.close()
    log = srv.log()
    print(f"\nfile limit 256, 400 half-sent (sent in {flood_s:.1f} s): peak {peak} open files; /healthz 200 "
          f"after {healthy_after} s; log {len(log)} bytes")
    assert "Too many open files" not in log, log[-2000:]
    assert "Traceback" not in log and len(log) < 4000, log[-2000:]
    assert peak < 256
    assert healthy_after is not None and healthy_after - flood_s < 2 + 3  # the header timeout, and slack
    assert srv.proc.poll() is None


def test_connection_limit_answers_503_and_frees_up(serve):
    srv = serve(env={"MIMICRY_HEADER_TIMEOUT_S": "2", "MIMICRY_MAX_CONNECTIONS": "10"})
    t0 = time.monotonic()
    socks = _half_sent(srv.port, 12)
    try:
        r = httpx.get(srv.url + "/healthz", timeout=5)
        assert r.status_code == 503
        assert time.monotonic() - t0 < 1.5
        # in the service's error shape, as every other error (uvicorn's own is plain text)
        assert r.headers["content-type"] == "application/json" and r.json()["error"]["code"] == "overloaded"
        assert r.headers["retry-after"] == "1"
        while time.monotonic() - t0 < 2 + 5:
            time.sleep(0.2)
            if httpx.get(srv.url + "/healthz", timeout=5).status_code == 200:
                break
        else:
            raise AssertionError("the connection limit did not free up after the header timeout")
    finally:
        for s in socks:
            s.close()


def test_settings_pass_through_with_several_workers(serve):
    """--workers: each process gets the keep-alive and header timeouts (not uvicorn's defaults)."""
    srv = serve("--workers", "2", env={"MIMICRY_KEEP_ALIVE_TIMEOUT_S": "2", "MIMICRY_HEADER_TIMEOUT_S": "1"})
    t_half = time.monotonic()
    socks = _half_sent(srv.port, 4)
    idle = []
    for _ in range(4):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        idle.append(conn.sock)
    t_idle = time.monotonic()
    try:
        half_held = _still_open(socks, t_half + 4)
        idle_held = _still_open(idle, t_idle + 4)  # uvicorn's default would hold them 5 s, ours 75 s
    finally:
        for s in socks + idle:
            s.close()
    assert half_held == 0, f"{half_held} of 4 half-sent connections open 4 s later (header timeout 1 s)"
    assert idle_held == 0, f"{idle_held} of 4 idle connections open 4 s later (keep-alive 2 s)"


def test_an_answered_error_keeps_the_connection(tmp_path):
    """A 500 or 503 that the app's error handlers answered in JSON does not close the connection.
    (For the catch-all handler's 500 and lost-database 503 starlette re-raises the exception after
    answering, and uvicorn closed the connection on it without a `Connection: close`, so the client's
    next request on it was reset; an APIError's 503 never closed it.)"""
    import sqlite3

    import uvicorn

    from mimicry.service.app import create_app
    from mimicry.service.errors import APIError
    from mimicry.service.server import service_app, uvicorn_options
    from mimicry.service.settings import Settings

    settings = Settings(model_dir=MODEL, keys_db=tmp_path / "keys.sqlite3", intra_op_threads=1,
                        style_encoder_dir="", host="127.0.0.1", port=free_port())
    app = create_app(settings)

    @app.get("/test-only/bug")
    async def bug():
        raise KeyError("a bug")

    @app.get("/test-only/db-gone")
    async def db_gone():
        raise sqlite3.OperationalError("unable to open database file")

    @app.get("/test-only/full")
    async def full():
        raise APIError("overloaded", "the queue is full", headers={"Retry-After": "1"})

    server = uvicorn.Server(uvicorn.Config(service_app(app), host=settings.host, port=settings.port,
                                           log_level="warning", **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", settings.port, timeout=30)
        for path, status in [("/test-only/bug", 500), ("/healthz", 200), ("/test-only/db-gone", 503),
                             ("/healthz", 200), ("/test-only/full", 503), ("/healthz", 200)]:
            conn.request("GET", path)
            r = conn.getresponse()
            assert r.status == status and r.read().startswith(b"{")
            time.sleep(0.2)  # a close would have reached us by now
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("soft", [256, 1024, 4096, 65536, 1_048_576])
def test_connection_limits_leave_files_for_the_accept_loop_and_the_process(soft, monkeypatch):
    from mimicry.service.server import ACCEPT_TURNS, FD_RESERVE_MIN, connection_limits
    from mimicry.service.settings import Settings

    for var in ("MIMICRY_MAX_CONNECTIONS", "MIMICRY_BACKLOG", "MIMICRY_KEEP_ALIVE_TIMEOUT_S"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings()
    assert settings.keep_alive_timeout_s > 60  # longer than a load balancer's usual idle timeout
    max_open, limit, backlog = connection_limits(settings, soft)
    assert max_open + ACCEPT_TURNS * backlog + FD_RESERVE_MIN <= soft
    assert 1 <= limit <= min(max_open, settings.max_connections) and 1 <= backlog <= settings.backlog
    if soft >= 65536:  # room enough: the settings as given
        assert (limit, backlog) == (settings.max_connections, settings.backlog)
