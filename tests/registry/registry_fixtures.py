"""Helpers for the registry tests: works drawn in made-up styles, and the bundled encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[2]
ENCODER_DIR = REPO / "models" / "style-encoder"
STYLES = ("ink", "flat", "pastel", "hatch")


def draw_work(style: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Random shapes (the subject changes every time) drawn the way ``style`` draws."""
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = x0 + int(rng.integers(size // 5, size // 2)), y0 + int(rng.integers(size // 5, size // 2))
        box = [x0, y0, x1, y1]
        shape = d.ellipse if rng.random() < 0.5 else d.rectangle
        if style == "ink":
            shape(box, outline="black", width=4)
        elif style == "flat":
            colour = [(220, 30, 30), (30, 60, 220), (250, 200, 0)][int(rng.integers(0, 3))]
            shape(box, fill=colour)
        elif style == "pastel":
            colour = tuple(int(c) for c in rng.integers(170, 235, 3))
            shape(box, fill=colour)
        elif style == "hatch":
            for x in range(x0 - (y1 - y0), x1, 4):
                d.line([x, y1, x + (y1 - y0), y0], fill=(90, 90, 90), width=1)
        else:
            raise ValueError(style)
    if style == "pastel":
        im = im.filter(ImageFilter.GaussianBlur(3))
    if style == "hatch":  # keep the hatching inside the frame of shapes only roughly: cut the corners white
        arr = np.asarray(im).copy()
        arr[: size // 8], arr[-size // 8:] = 255, 255
        im = Image.fromarray(arr)
    return im


def write_portfolio(folder: Path, style: str, n: int, seed: int) -> list[Path]:
    """``n`` PNG works of one style in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{style}_{seed}_{i:02d}.png"
        draw_work(style, rng).save(p)
        paths.append(p)
    return paths
