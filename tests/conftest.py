"""Shared fixtures: tiny data made inside the tests, nothing downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access in a test is a bug


@pytest.fixture(scope="session", autouse=True)
def _private_data_folder(tmp_path_factory):
    """Keys and registries that a test leaves to their defaults go to a temporary folder, never
    to the user's own data folder ($MIMICRY_HOME, inherited by the commands tests start)."""
    saved = os.environ.get("MIMICRY_HOME")
    os.environ["MIMICRY_HOME"] = str(tmp_path_factory.mktemp("mimicry-home"))
    yield
    if saved is None:
        os.environ.pop("MIMICRY_HOME", None)
    else:
        os.environ["MIMICRY_HOME"] = saved


def draw_clipart(rng: np.random.Generator, size: int) -> Image.Image:
    """A random flat-colour shape on white, clip-art-like."""
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, size // 2, 2)
        x1, y1 = x0 + rng.integers(size // 4, size // 2), y0 + rng.integers(size // 4, size // 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=colour, outline="black", width=2)
    return im


@pytest.fixture(scope="session")
def artist_dir(tmp_path_factory) -> Path:
    """Eight works of one made-up artist, with captions in metadata.jsonl."""
    d = tmp_path_factory.mktemp("artist")
    rng = np.random.default_rng(0)
    subjects = ["a red apple", "a house", "a cat", "a tree"]
    with open(d / "metadata.jsonl", "w") as meta:
        for i in range(8):
            name = f"work_{i}.png"
            draw_clipart(rng, 48).save(d / name)
            meta.write(json.dumps({"file_name": name, "text": f"clip art of {subjects[i % 4]}"}) + "\n")
    return d
