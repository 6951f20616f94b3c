"""Fixtures for the service: the real bundled model, a TestClient, and a live uvicorn server."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "default"
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


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


def jpeg_bytes(size=(1000, 1000), quality=90, seed=0) -> bytes:
    """A photo-like JPEG (smooth gradients plus noise) of the given size."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server(make_settings):
    def start(**overrides) -> LiveServer:
        return LiveServer(create_app(make_settings(**overrides)))

    return start
