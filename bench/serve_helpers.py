"""What the service benchmarks share: `mimicry serve` in its own process, a free port, a process's RSS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mimicry serve` with extra environment variables, its output in a file, its own data folder
    (``tmp``: keys and registry)."""

    def __init__(self, model: str, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tempfile.TemporaryDirectory()
        self.log_path = Path(self.tmp.name) / "serve.log"
        full_env = {**os.environ, "MIMICRY_KEYS_DB": os.path.join(self.tmp.name, "keys.sqlite3"),
                    "MIMICRY_HOME": self.tmp.name, **env}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mimicry", "serve", "--model", model, "--port", str(self.port),
                 "--log-level", "warning"], env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.tmp.cleanup()

    def log_bytes(self) -> int:
        return self.log_path.stat().st_size


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
