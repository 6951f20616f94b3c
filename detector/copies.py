"""Copies of enrolled works: what the registry keeps of each work to recognise it, and the test.

Style similarity says whose manner an image resembles; it cannot say "this is enrolled work X": a
half-size copy of a work can score lower against it than another work does. Copies are found in
two stages instead, over a small signature of each work (:func:`signature`, from the decoded RGB
image, transparency already on white):

0. the same file: a query whose bytes hash (sha256) to an enrolled work's is that work, distance 0,
   whatever its pixels (a work that is blank once its transparency is on white included);
1. candidates, cheaply: the works whose difference hash (``imagehash.dhash``, 64 bits) is within
   :data:`CANDIDATE_BITS` bits of the query's, at most :data:`MAX_CANDIDATES` of the nearest, and the
   works nearest in style when the caller has the query's style embedding;
2. the decision, precisely: both images as :data:`SIDE` x :data:`SIDE` greyscale thumbnails
   (area-averaged, aspect ignored), compared by :func:`distance`, the RMS of their difference after
   each loses its mean, over the sum of their own RMS (0 for the same picture, about 0.7 for two
   unrelated ones). A copy is a candidate at most :data:`COPY_DISTANCE` away whose aspect ratio is
   within :data:`ASPECT_TOLERANCE` of the query's. A query under :data:`SMALL_QUERY` px on its shorter
   side is also compared at half that grid (both thumbnails 2 x 2 area-averaged), and the nearer of
   the two counts: its thumbnail is made by stretching, not averaging, and at 32 px the stretch alone
   moved a 42-px copy of an 84-px icon 0.26 from it (0.11 at 16 px), while a fine dot pattern halved
   is recognised at 32 px and not at 16;
3. when several works pass, which one: the one nearest by :func:`distance` over :data:`COLOUR_SIDE` x
   :data:`COLOUR_SIDE` RGB views of the registry's colour thumbnails (:func:`make_thumbnail`, the query's
   made the same way). Sibling pictures of one set (the same star with another number of points, one
   icon in two colours) pass the grey test alike; colour, and a second view made by another path, tell
   the work itself from its siblings more often. This stage picks among copies; it never makes one.

A hash alone cannot decide: clip art on white hashes alike (a fifth of openclipart works have another
work within 8 bits of pHash), while re-encoding moves a work's own hash further than that. The
threshold and what it buys are measured by ``bench/copy_benchmark.py`` (BENCHMARKS.md): a threshold of
0.22 was chosen on one sample of openclipart and measured on another; so was the third stage (colour at
32 px against 48 and 64 px, grey or blurred, on the same sample: finer views told siblings apart no better
and lost half-size copies to resampling). Images with almost no detail
(a thumbnail whose grey levels vary by less than :data:`MIN_DETAIL`) are never called copies: a blank
page is not a work anyone can be told they copied.

numpy, Pillow and imagehash (its ``dhash`` needs neither scipy nor PyWavelets at run time).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os

import imagehash
import numpy as np
from PIL import Image

from .bundle import file_sha256

SIDE = 32  # the thumbnail compared: 1,024 grey levels per work
CANDIDATE_BITS = 12  # dhash radius of the candidates (JPEG 50, 3/4 size moved a work's own hash <= 6 bits)
MAX_CANDIDATES = 256  # nearest by hash; a near-blank query matches many works' hashes
STYLE_CANDIDATES = 16  # nearest by style embedding, when there is one
COPY_DISTANCE = 0.22  # chosen by measurement (module docstring)
ASPECT_TOLERANCE = 0.1  # |log(aspect ratio / the work's)|: 10%, more than rounding a small image's size
SMALL_QUERY = 2 * SIDE  # a query smaller than this (shorter side, px) is also compared at SIDE // 2 (stage 2)
MIN_DETAIL = 2.0  # standard deviation of the thumbnail's grey levels (0-255) below which nothing is a copy
THUMBNAIL_SIDE = 96  # the registry's colour thumbnail of each work (shown by the doors, compared by stage 3)
COLOUR_SIDE = 32  # the side of the RGB view that stage 3 compares


@dataclasses.dataclass(frozen=True)
class Signature:
    """What is kept of one image to recognise copies of it: the 64-bit difference hash, the
    ``SIDE`` x ``SIDE`` greyscale thumbnail (uint8, row-major) and the aspect ratio (width / height)."""

    dhash: int
    thumb: bytes
    aspect: float
    colour: bytes | None = None  # COLOUR_SIDE x COLOUR_SIDE RGB of the image's thumbnail (queries only)
    sha256: str | None = None  # of the query's file bytes, when it came as a file or bytes (stage 0)
    side: int | None = None  # the query image's shorter side in px (None for a stored work's signature)

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


def signature(image: Image.Image, colour: bool = False) -> Signature:
    """The signature of a decoded RGB (or greyscale) image; with ``colour``, also the RGB view of its
    thumbnail that stage 3 compares (a query's; an enrolled work's comes from its stored thumbnail;
    :meth:`~mimicry.detector.registry.Registry.copy_signature` makes it only where it can matter)."""
    if image.width < 1 or image.height < 1:
        raise ValueError(f"an image of {image.width}x{image.height} pixels has no signature")
    # Exact area averages: Pillow's reducing_gap (an integer reduction first) moved a work's own
    # thumbnail 0.11 away from itself, half the threshold.
    grey = image.convert("L") if image.mode != "L" else image
    thumb = grey.resize((SIDE, SIDE), Image.Resampling.BOX)
    digest = imagehash.dhash(thumb)  # 9 x 8 from the thumbnail: the same pixels the decision compares
    sig = Signature(int(str(digest), 16), thumb.tobytes(), image.width / image.height, side=min(image.size))
    return with_colour(sig, image) if colour else sig


def source_sha256(source) -> str | None:
    """The sha256 (hex) of a source's bytes, as the registry records an enrolled file's: for a path or
    encoded bytes; None for a decoded image or an array, which have no file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, (str, os.PathLike)):
        return file_sha256(source)
    return None


def with_colour(sig: Signature, image: Image.Image) -> Signature:
    """``sig`` of ``image`` with its colour view: the thumbnail made as enrolment makes a work's."""
    return dataclasses.replace(sig, colour=colour_view(make_thumbnail(shrink(image))))


def shrink_in_place(image: Image.Image) -> None:
    """Shrink ``image`` to at most ``4 * THUMBNAIL_SIDE`` px on its longer side: what enrolment keeps of a
    decoded work to make its thumbnail from (one full-size decode at a time)."""
    image.thumbnail((THUMBNAIL_SIDE * 4, THUMBNAIL_SIDE * 4), Image.Resampling.LANCZOS, reducing_gap=3.0)


def shrink(image: Image.Image) -> Image.Image:
    """A copy of ``image`` shrunk as :func:`shrink_in_place` shrinks an enrolled work."""
    small = image.copy()
    shrink_in_place(small)
    return small


def make_thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """A WebP thumbnail, at most ``side`` px on the longer side."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="WEBP", quality=80, method=4)
    return buf.getvalue()


def colour_view(thumbnail: bytes) -> bytes | None:
    """The ``COLOUR_SIDE`` x ``COLOUR_SIDE`` RGB view (uint8, row-major) of a WebP thumbnail made by
    :func:`make_thumbnail`, area-averaged, aspect ignored; None when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(thumbnail)) as im:
            return im.convert("RGB").resize((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX).tobytes()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def pick(query: Signature, matches: list[tuple[float, bytes | None]]) -> int:
    """Stage 3: the index in ``matches`` (each a work that passed stage 2: its :func:`distance` and its
    stored thumbnail) of the one the query is a copy of. Nearest by colour view when there are several
    and the query and every one of them have a view, else nearest by stage 2's distance."""
    order = range(len(matches))
    views = [colour_view(t) if t is not None else None for _, t in matches] \
        if len(matches) > 1 and query.colour is not None else [None]
    if any(v is None for v in views):
        return min(order, key=lambda i: matches[i][0])
    return min(order, key=lambda i: (distance(query.colour, views[i]), matches[i][0]))


def query_distance(query: Signature, thumb: bytes) -> float:
    """Stage 2's :func:`distance` of a query to one stored thumbnail; for a small query
    (:data:`SMALL_QUERY`) the nearer of the full grid's and the half grid's."""
    d = distance(query.thumb, thumb)
    if query.side is not None and query.side < SMALL_QUERY:
        return min(d, distance(halve(query.thumb), halve(thumb)))
    return d


def halve(thumb: bytes) -> bytes:
    """A ``SIDE`` x ``SIDE`` grey thumbnail 2 x 2 area-averaged to ``SIDE // 2`` (rounded to uint8)."""
    a = np.frombuffer(thumb, np.uint8).reshape(SIDE // 2, 2, SIDE // 2, 2).astype(np.float32)
    return np.rint(a.mean(axis=(1, 3))).astype(np.uint8).tobytes()


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
