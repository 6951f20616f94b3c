"""Copies of enrolled works: what the registry keeps of each work to recognise it, and the test.

Style similarity says whose manner an image resembles; it cannot say "this is enrolled work X": a
half-size copy of a work can score lower against it than another work does. Copies are found in
two stages instead, over a small signature of each work (:func:`signature`, from the decoded RGB
image, transparency already on white):

1. candidates, cheaply: the works whose difference hash (``imagehash.dhash``, 64 bits) is within
   :data:`CANDIDATE_BITS` bits of the query's, at most :data:`MAX_CANDIDATES` of the nearest, and the
   works nearest in style when the caller has the query's style embedding;
2. the decision, precisely: both images as :data:`SIDE` x :data:`SIDE` greyscale thumbnails
   (area-averaged, aspect ignored), compared by :func:`distance`, the RMS of their difference after
   each loses its mean, over the sum of their own RMS (0 for the same picture, about 0.7 for two
   unrelated ones). A copy is a candidate at most :data:`COPY_DISTANCE` away whose aspect ratio is
   within :data:`ASPECT_TOLERANCE` of the query's.

A hash alone cannot decide: clip art on white hashes alike (a fifth of openclipart works have another
work within 8 bits of pHash), while re-encoding moves a work's own hash further than that. The
threshold and what it buys are measured by ``bench/copy_benchmark.py`` (BENCHMARKS.md): a threshold of
0.22 was chosen on one sample of openclipart and measured on another. Images with almost no detail
(a thumbnail whose grey levels vary by less than :data:`MIN_DETAIL`) are never called copies: a blank
page is not a work anyone can be told they copied.

numpy, Pillow and imagehash (its ``dhash`` needs neither scipy nor PyWavelets at run time).
"""

from __future__ import annotations

import dataclasses
import math

import imagehash
import numpy as np
from PIL import Image

SIDE = 32  # the thumbnail compared: 1,024 grey levels per work
CANDIDATE_BITS = 12  # dhash radius of the candidates (JPEG 50, 3/4 size moved a work's own hash <= 6 bits)
MAX_CANDIDATES = 256  # nearest by hash; a near-blank query matches many works' hashes
STYLE_CANDIDATES = 16  # nearest by style embedding, when there is one
COPY_DISTANCE = 0.22  # chosen by measurement (module docstring)
ASPECT_TOLERANCE = 0.1  # |log(aspect ratio / the work's)|: 10%, more than rounding a small image's size
MIN_DETAIL = 2.0  # standard deviation of the thumbnail's grey levels (0-255) below which nothing is a copy


@dataclasses.dataclass(frozen=True)
class Signature:
    """What is kept of one image to recognise copies of it: the 64-bit difference hash, the
    ``SIDE`` x ``SIDE`` greyscale thumbnail (uint8, row-major) and the aspect ratio (width / height)."""

    dhash: int
    thumb: bytes
    aspect: float

    @property
    def hash_bytes(self) -> bytes:
        return self.dhash.to_bytes(8, "big")

    @property
    def detailed(self) -> bool:
        """Whether the image has detail enough to be recognised (see :data:`MIN_DETAIL`)."""
        return float(np.frombuffer(self.thumb, np.uint8).std()) >= MIN_DETAIL

    @classmethod
    def from_stored(cls, hash_bytes: bytes, thumb: bytes, aspect: float) -> Signature:
        return cls(int.from_bytes(hash_bytes, "big"), bytes(thumb), float(aspect))


@dataclasses.dataclass(frozen=True)
class CopyMatch:
    """An enrolled work the query is a copy of: the work, its artist, and how far the two are by
    :func:`distance` (at most :data:`COPY_DISTANCE`) and in dhash bits."""

    work_id: int
    source: str
    sha256: str
    artist: str
    distance: float
    hash_bits: int


def signature(image: Image.Image) -> Signature:
    """The signature of a decoded RGB (or greyscale) image."""
    if image.width < 1 or image.height < 1:
        raise ValueError(f"an image of {image.width}x{image.height} pixels has no signature")
    # Exact area averages: Pillow's reducing_gap (an integer reduction first) moved a work's own
    # thumbnail 0.11 away from itself, half the threshold.
    grey = image.convert("L") if image.mode != "L" else image
    thumb = grey.resize((SIDE, SIDE), Image.Resampling.BOX)
    digest = imagehash.dhash(thumb)  # 9 x 8 from the thumbnail: the same pixels the decision compares
    return Signature(int(str(digest), 16), thumb.tobytes(), image.width / image.height)


def distance(a: bytes, b: np.ndarray | bytes) -> np.ndarray | float:
    """Normalised RMS difference of thumbnail ``a`` and thumbnail(s) ``b`` (one as bytes, or an
    ``(N, SIDE * SIDE)`` uint8 array): ``|a' - b'| / (|a'| + |b'|)`` where ``x'`` is ``x`` less its
    mean. 0 for the same picture (or the same picture brighter), 1 for a negative of it."""
    q = np.frombuffer(a, np.uint8).astype(np.float32)
    m = np.atleast_2d(np.frombuffer(b, np.uint8) if isinstance(b, (bytes, bytearray)) else b).astype(np.float32)
    q -= q.mean()
    m -= m.mean(axis=1, keepdims=True)
    d = np.linalg.norm(m - q, axis=1) / np.maximum(np.linalg.norm(q) + np.linalg.norm(m, axis=1), 1e-6)
    return float(d[0]) if isinstance(b, (bytes, bytearray)) else d


def hamming(hashes: np.ndarray, value: int) -> np.ndarray:
    """Bits in which each of ``hashes`` (uint64) differs from ``value``."""
    return np.bitwise_count(np.bitwise_xor(hashes, np.uint64(value)))


def aspect_close(a: float, b: float) -> bool:
    return abs(math.log(a / b)) <= ASPECT_TOLERANCE
