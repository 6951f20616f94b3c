"""Helpers for the reliability tests: paths, a `mimicry serve` subprocess, RSS readings."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class ServeProcess:
    """`mimicry serve` in its own process (so its RSS can be read and it can be killed)."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {"MIMICRY_KEYS_DB": str(tmp / "keys.sqlite3"), "MIMICRY_INTRA_OP_THREADS": "1",
                    "PATH": "/usr/bin:/bin", "HOME": str(tmp), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "mimicry", "serve", "--model", str(MODEL),
                                      "--port", str(self.port), "--log-level", "warning", *args],
                                     env=full_env, cwd=ROOT)

    def wait_ready(self, timeout: float = 60) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (exit {self.proc.poll()})")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
