"""Fuzzing the decode path with hypothesis: mutated real images and arbitrary bytes.

Bounded for CI (a few hundred examples per seed format). Every input must either decode to an
8-bit RGB image or raise :class:`DecodeError` with a known code; nothing else may escape, no input
may take longer than the per-image budget, and memory must stay bounded.
"""

from __future__ import annotations

import io
import resource
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mimicry.detector.decode import ERROR_CODES, DecodeError, decode_image

PER_IMAGE_BUDGET_S = 2.0
MAX_PIXELS = 4_000_000


def _seed(fmt: str, **kw) -> bytes:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    if fmt == "GIF":
        im = im.convert("P")
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


SEEDS = {fmt: _seed(fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")}


@st.composite
def mutated(draw, fmt: str) -> bytes:
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "dup"]))
        i = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
        elif kind == "cut":
            data = data[:i]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "dup" and data:
            j = draw(st.integers(i, min(len(data), i + 64)))
            data[i:i] = data[i:j]
    return bytes(data)


def _check(data: bytes) -> None:
    t0 = time.monotonic()
    try:
        im = decode_image(data, max_pixels=MAX_PIXELS)
    except DecodeError as exc:
        assert exc.code in ERROR_CODES
    else:
        assert im.mode == "RGB" and im.width * im.height <= MAX_PIXELS
    assert time.monotonic() - t0 < PER_IMAGE_BUDGET_S


_FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_mutated_images_decode_or_fail_cleanly(fmt):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @_FUZZ
    @given(mutated(fmt))
    def run(data):
        _check(data)

    run()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"peak RSS grew by {grown_mb:.0f} MB while fuzzing {fmt}"


@_FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_fail_cleanly(data):
    _check(data)


@_FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.binary(min_size=1, max_size=64))
def test_valid_header_then_garbage(fmt, tail):
    _check(SEEDS[fmt][:48] + tail)
