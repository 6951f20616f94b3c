"""Decode untrusted images safely into 8-bit RGB.

Everything a scan or an upload hands us goes through :func:`decode_image`, which refuses before it
spends memory: the byte size is checked before the file is read, only an allow-list of Pillow
plugins may parse the bytes, and the pixel count in the header is checked before any pixel is
decoded. Every failure is a :class:`DecodeError` with a stable ``code`` that callers can count and
report, never a Pillow exception of whichever type the plugin happened to raise.

The colour handling matches ``mimicry.training.corpus.normalize_artwork`` (EXIF orientation applied,
16-bit greyscale scaled to 8 bits, transparency composited onto white), so a detector sees uploads
exactly as its training data was made. That function also pads and resizes; decoding does not.

:func:`decode_with_metadata` also hands back what Pillow already read from the file's headers (text
chunks, the XMP packet, EXIF) as :class:`ImageMetadata`, for ``mimicry.detector.provenance``; nothing more
is parsed to get it.

**Animations.** :func:`decode_image` and :func:`decode_with_metadata` give the first frame. :func:`decode_frames`
gives several frames of an animated GIF, WebP or PNG (APNG) with more than one frame: up to
:data:`MAX_FRAMES`, spread evenly over the frames it may reach, each made RGB as a still image is. Reaching a
late frame means decoding every frame before it, so the frames reached are bounded by pixels:
``min(MAX_FRAMES_REACHED, FRAME_PIXEL_BUDGET // (width * height))`` frames (at least the first), each later
frame's size checked against ``max_pixels`` and the budget before it is decoded. A frame that cannot be
reached within the budget, or cannot be decoded, ends the animation there: the frames are spread over those
before it (which may take one more pass over them, so at most twice the budget is decoded). Other
multi-frame files (a multi-page TIFF, an MPO) give their first frame, as every still does.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np
from PIL import Image, ImageOps

DEFAULT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
# Stable error codes: part of the public contract (CLI rows, HTTP bodies), never renamed.
ERROR_CODES = ("too_large", "too_many_pixels", "unsupported_format", "corrupt", "empty", "not_found", "too_small")
# The smallest side a detector judges (mimicry.detector.detector.Detector.decode): below it an image holds too
# little of a style for any verdict to mean something (a 1 x 1 image used to come back "human 0.005").
MIN_SIDE = 32
# Animations (decode_frames): the frame formats that animate, how many frames are scored, and what reaching
# them may cost. 8,000,000 pixels is the decode of one large still (the service's large_image_pixels): 32
# frames of 500 x 500, 101 of 320 x 240; a frame of more than that many pixels leaves only the first.
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")
MAX_FRAMES = 4
FRAME_PIXEL_BUDGET = 8_000_000
MAX_FRAMES_REACHED = 512  # however small the frames: each costs a fixed overhead to seek past

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

_EXIF_ORIENTATION = 0x0112
_TIFF_C2PA_TAG = 0xCD41
_EXIF_IFD = 0x8769
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I")
# EXIF orientation -> the transpose that displays it upright (as ImageOps.exif_transpose does)
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


@dataclasses.dataclass(frozen=True)
class ImageMetadata:
    """Metadata that Pillow read while opening the image; unparsed and untrusted.

    ``text`` holds the string-valued entries of Pillow's ``info`` (a PNG's tEXt/zTXt/iTXt chunks),
    ``xmp`` the raw XMP packet (JPEG APP1, PNG iTXt, WebP chunk, TIFF tag 700), ``exif`` Pillow's
    lazily parsed EXIF (IFD0; sub-IFDs on request). An array or a plain in-memory image has none.
    ``c2pa_box`` says whether the file holds a C2PA (JUMBF) box, where Pillow has read the place the
    format keeps it already (a JPEG's APP11 segments, a TIFF's tag 52545; a BMP cannot hold one);
    None means "not known from the headers" (``mimicry.detector.provenance`` looks in the file).
    """

    format: str | None = None
    text: dict[str, str] = dataclasses.field(default_factory=dict)
    xmp: bytes | None = None
    exif: Image.Exif | None = None
    c2pa_box: bool | None = None


class Decoded(NamedTuple):
    """What :func:`decode_with_metadata` returns: the RGB image and its file's metadata."""

    image: Image.Image
    metadata: ImageMetadata


class Animation(NamedTuple):
    """Which frames of an animated source :func:`decode_frames` decoded.

    ``count``: the frames in the file, from its header (WebP, APNG), or for a GIF as far as it was read
    (None when the GIF goes on past the frames reached: counting them would mean reading the whole file).
    ``reached``: the leading frames the decoded ones are spread over (``count``, unless the pixel budget
    or an unreadable frame ended it sooner). ``indices``: the frames decoded, 0-based, ascending; 0 always.
    """

    count: int | None
    reached: int
    indices: tuple[int, ...]


class DecodedFrames(NamedTuple):
    """What :func:`decode_frames` returns: RGB images (one, or one per frame in ``animation.indices``),
    the file's metadata (read with the first frame) and ``animation`` (None for a still image)."""

    images: list[Image.Image]
    metadata: ImageMetadata
    animation: Animation | None


class DecodeError(Exception):
    """An image that cannot be decoded; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown decode error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


def decode_image(
    source: Source,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: tuple[str, ...] | list[str] = DEFAULT_FORMATS,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode ``source`` into an 8-bit RGB image, or raise :class:`DecodeError`.

    The same as ``decode_with_metadata(...).image``.

    ``source`` is a path, encoded bytes, a PIL image or a uint8 array (HxW grey, HxWx3 RGB or
    HxWx4 RGBA). Only the first frame of an animation is read (:func:`decode_frames` reads several). ``draft_size``, when given, lets
    JPEGs decode at 1/2, 1/4 or 1/8 scale as long as both sides stay >= ``draft_size`` (several
    times faster for large photos; the caller resizes to that size afterwards anyway).
    """
    return decode_with_metadata(source, max_bytes=max_bytes, max_pixels=max_pixels,
                                allowed_formats=allowed_formats, draft_size=draft_size).image


def decode_with_metadata(
    source: Source,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: tuple[str, ...] | list[str] = DEFAULT_FORMATS,
    draft_size: int | None = None,
) -> Decoded:
    """:func:`decode_image`, plus the :class:`ImageMetadata` Pillow read on the way (no extra pass)."""
    images, metadata, _ = _decode(source, max_bytes, max_pixels, allowed_formats, draft_size, None)
    return Decoded(images[0], metadata)


def decode_frames(
    source: Source,
    *,
    max_frames: int = MAX_FRAMES,
    frame_pixel_budget: int = FRAME_PIXEL_BUDGET,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: tuple[str, ...] | list[str] = DEFAULT_FORMATS,
    draft_size: int | None = None,
) -> DecodedFrames:
    """:func:`decode_with_metadata` for a source that may be animated: a still image gives one image and
    ``animation=None``; an animated GIF, WebP or PNG (more than one frame) gives up to ``max_frames``
    frames spread evenly over the first ``min(MAX_FRAMES_REACHED, frame_pixel_budget // (width * height))``
    (the module's docstring has the whole rule), each through :func:`to_rgb` with the first frame's EXIF
    orientation, and :class:`Animation` saying which. A PIL image is sampled only when it is at its first
    frame (one the caller has moved to a later frame is that frame, as a still). Raises DecodeError only
    for what :func:`decode_with_metadata` raises: a later frame that cannot be read ends the animation."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    sampling = (max(1, max_frames), max(0, frame_pixel_budget))
    return DecodedFrames(*_decode(source, max_bytes, max_pixels, allowed_formats, draft_size, sampling))


def _decode(source: Source, max_bytes: int, max_pixels: int, allowed_formats, draft_size: int | None,
            sampling: tuple[int, int] | None):
    """(images, metadata, animation); ``sampling`` is (max_frames, frame_pixel_budget) or None (first frame)."""
    formats = _check_formats(allowed_formats)
    if isinstance(source, (str, os.PathLike)):
        return _decode_path(Path(source), max_bytes, max_pixels, formats, draft_size, sampling)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_byte_count(len(data), max_bytes)
        return _decode_stream(io.BytesIO(data), max_pixels, formats, draft_size, sampling)
    if isinstance(source, Image.Image):
        return _decode_pil(source, max_pixels, formats, sampling)
    if isinstance(source, np.ndarray):
        return _decode_array(source, max_pixels)
    raise DecodeError("unsupported_format", f"cannot decode a {type(source).__name__}; "
                      "give a path, bytes, a PIL image or a uint8 array")


def decode_cost(data: bytes | bytearray | memoryview, *, draft_size: int | None = None,
                allowed_formats: tuple[str, ...] | list[str] = DEFAULT_FORMATS,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The pixels that decoding ``data`` will produce, read from its header only (nothing is decoded):
    width x height, divided by the JPEG draft scale that ``draft_size`` allows (as
    :func:`decode_with_metadata` decodes), times the frames :func:`decode_frames` reaches in an animation
    (at most the default budget's reach: a WebP's or PNG's count from its header, a GIF's by walking its
    blocks, :func:`gif_frame_count`). 0 when the header cannot be read or the image has more than
    ``max_pixels`` (the decoder's limit): the decode will then fail at once, at no cost. What a server budgets
    its memory and CPU by before it decodes."""
    buf = bytes(data)
    try:
        with Image.open(io.BytesIO(buf), formats=list(_check_formats(allowed_formats))) as im:
            w, h = im.size
            fmt = im.format
            frames = 1
            if w > 0 and h > 0 and _is_animated(im):
                frames = _reach(w * h, FRAME_PIXEL_BUDGET)
                count = gif_frame_count(buf, frames) if fmt == "GIF" else int(im.n_frames)
                frames = min(frames, max(1, count))
    except Exception:  # unreadable or a bomb's header: the decode itself says which
        return 0
    if w * h > max_pixels:
        return 0
    if draft_size and fmt in ("JPEG", "MPO"):
        scale = 1
        while scale < 8 and min(w, h) // (scale * 2) >= draft_size:
            scale *= 2
        return -(-w // scale) * -(-h // scale)
    return w * h * frames


def gif_frame_count(data: bytes, limit: int) -> int:
    """The frames (image descriptors) of the GIF ``data``, counted up to ``limit``, by walking its blocks:
    nothing is decompressed, so the count costs a hop per 255-byte sub-block, not a frame's decode (Pillow's
    ``n_frames`` seeks, which decodes). Where the blocks end early or go wrong, the frames counted so far:
    the decoder stops there too."""
    n, end = 0, len(data)
    if end < 13 or data[:3] != b"GIF":
        return 0
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table

    def skip_sub_blocks(p: int) -> int:
        while p < end and data[p]:
            p += data[p] + 1
        return p + 1  # past the terminator (or past the end: the loop below stops)

    while pos < end and n < limit:
        kind = data[pos]
        if kind == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif kind == 0x2C:  # image descriptor: 9 bytes, a local colour table, the LZW code size, sub-blocks
            if pos + 10 > end:
                break
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            if pos >= end:
                break
            pos = skip_sub_blocks(pos + 1)
            if pos > end:
                break
            n += 1
        else:  # the trailer (0x3B) or bytes that are no block
            break
    return n


def to_rgb(image: Image.Image) -> Image.Image:
    """Bring a loaded image of any mode to 8-bit RGB with transparency composited onto white.

    ``mimicry.training.corpus.normalize_artwork`` calls it too, so training stores what serving sees: 16-bit
    greyscale is scaled by 1/257 (not clipped, which would turn most of it white), everything else goes
    through RGBA.
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image  # the common case; the RGBA round trip below would leave it unchanged
    if image.mode in _SIXTEEN_BIT_GREY:
        # In integers (what x / 257 truncated gives, bit for bit): a float64 copy took 8 bytes a pixel, three
        # times over, 0.9 GB for a 40-MP file.
        arr = np.clip(np.asarray(image), 0, 65535) // 257
        image = Image.fromarray(arr.astype(np.uint8), "L")
    rgba = image.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    return flat.convert("RGB")


# ----------------------------------------------------------------------------- sources


def _decode_path(path: Path, max_bytes: int, max_pixels: int, formats: tuple[str, ...],
                 draft_size: int | None, sampling: tuple[int, int] | None):
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DecodeError("not_found", f"no such file: {path}") from None
    except OSError as exc:
        raise DecodeError("not_found", f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise DecodeError("not_found", f"not a file: {path}")
    _check_byte_count(st.st_size, max_bytes)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DecodeError("not_found", f"cannot read {path}: {exc.strerror or exc}") from None
    # Pillow reads lazily from the open file: nothing beyond the header is read before the pixel
    # check, and the file is never held in memory twice.
    with f:
        return _decode_stream(f, max_pixels, formats, draft_size, sampling)


def _decode_stream(fp, max_pixels: int, formats: tuple[str, ...], draft_size: int | None,
                   sampling: tuple[int, int] | None):
    try:
        im = Image.open(fp, formats=list(formats))
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_many_pixels", _pillow_bomb_message(exc)) from None
    except Image.DecompressionBombWarning as exc:  # raised only where warnings are errors
        raise DecodeError("too_many_pixels", _pillow_bomb_message(exc)) from None
    except Image.UnidentifiedImageError:
        raise _unidentified(fp, formats) from None
    except Exception as exc:  # plugins raise many types on a bad header; all mean the same here
        raise DecodeError("corrupt", f"unreadable header ({_short(exc)})") from None
    _check_pixel_count(im.size, max_pixels)
    if draft_size and im.format in ("JPEG", "MPO"):
        im.draft(None, (draft_size, draft_size))
    # Asked before the first frame is decoded: a GIF answers by reading the next frame's header and
    # rewinding, which would drop a frame already loaded.
    animated = sampling is not None and _is_animated(im)
    try:
        im.load()  # the first frame; later ones only in _sample_frames, within its budget
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_many_pixels", _pillow_bomb_message(exc)) from None
    except Exception as exc:  # truncated data, bad checksums, broken compressed streams
        raise DecodeError("corrupt", f"{im.format} data is corrupt or truncated "
                          f"({_short(exc)})") from None
    return _finish(im, sampling if animated else None, max_pixels)


def _decode_pil(image: Image.Image, max_pixels: int, formats: tuple[str, ...], sampling: tuple[int, int] | None):
    if image.format is not None and image.format not in formats and not (
            image.format == "MPO" and "JPEG" in formats):
        raise DecodeError("unsupported_format", f"{image.format} is not an allowed format "
                          f"({', '.join(formats)})")
    _check_pixel_count(image.size, max_pixels)
    animated = False
    if sampling is not None:
        try:  # a caller's image moved to a later frame is judged as that frame
            animated = image.tell() == 0 and _is_animated(image)
        except Exception:
            animated = False
    try:
        image.load()  # a lazily opened ImageFile may still hold undecoded, possibly broken data
    except Exception as exc:
        raise DecodeError("corrupt", f"image data is corrupt or truncated ({_short(exc)})") from None
    try:
        images, metadata, animation = _finish(image, sampling if animated else None, max_pixels)
    finally:
        if animated:
            try:
                image.seek(0)  # the caller's image is left at the frame it was given at
            except Exception:
                pass
    images[0] = images[0].copy() if images[0] is image else images[0]  # never hand the caller's own object back
    return images, metadata, animation


def _decode_array(arr: np.ndarray, max_pixels: int):
    if arr.dtype != np.uint8:
        raise DecodeError("unsupported_format", f"array dtype {arr.dtype} is not uint8")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise DecodeError("unsupported_format",
                          f"array of shape {arr.shape} is not HxW, HxWx3 or HxWx4")
    if arr.size == 0:
        raise DecodeError("empty", f"array of shape {arr.shape} has no pixels")
    _check_pixel_count((arr.shape[1], arr.shape[0]), max_pixels)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2] if arr.ndim == 3 else 2]
    return [to_rgb(Image.fromarray(np.ascontiguousarray(arr), mode))], ImageMetadata(), None


def _finish(im: Image.Image, sampling: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
    """(images, metadata, animation) of a loaded image: its first frame made RGB (and oriented), and with
    ``sampling`` the other frames :func:`_sample_frames` picks."""
    try:
        exif = im.getexif()
        orientation = exif.get(_EXIF_ORIENTATION, 1)
    except Exception:
        # Broken EXIF does not make broken pixels; show it unrotated, as most viewers do.
        exif, orientation = None, 1
    metadata = _metadata(im, exif)
    frame = ImageOps.exif_transpose(im) if orientation in _ORIENTATIONS else im
    try:
        rgb = to_rgb(frame)
    except Exception as exc:  # e.g. a mode Pillow opens but cannot convert
        raise DecodeError("unsupported_format", f"cannot convert mode {im.mode} to RGB "
                          f"({_short(exc)})") from None
    if sampling is None:
        return [rgb], metadata, None
    if rgb is im:
        rgb = im.copy()  # the file's image moves on to other frames
    images, animation = _sample_frames(im, rgb, orientation, sampling, max_pixels)
    return images, metadata, animation


# ----------------------------------------------------------------------------- animations


def _is_animated(im: Image.Image) -> bool:
    """More than one frame, in a format whose frames are an animation (not a TIFF's pages, an MPO's views)."""
    if im.format not in ANIMATED_FORMATS:
        return False
    try:
        return bool(getattr(im, "is_animated", False))
    except Exception:  # a GIF whose second frame's header is broken: the first frame is all there is
        return False


def _reach(frame_pixels: int, budget: int) -> int:
    """How many leading frames an animation of ``frame_pixels``-pixel frames may decode: at least one."""
    return max(1, min(MAX_FRAMES_REACHED, budget // max(1, frame_pixels)))


def _spread(n: int, k: int) -> tuple[int, ...]:
    """``min(k, n)`` frame indices spread evenly over ``0 .. n - 1``, the first and the last included."""
    return tuple(sorted({int(i) for i in np.round(np.linspace(0, n - 1, min(k, n)))}))


def _sample_frames(im: Image.Image, first: Image.Image, orientation: int, sampling: tuple[int, int],
                   max_pixels: int) -> tuple[list[Image.Image], Animation]:
    """Frames of an animation whose first frame is loaded (``first``, already RGB): see decode_frames."""
    max_frames, budget = sampling
    reach = _reach(im.size[0] * im.size[1], budget)
    # WebP and APNG say their frame count in the header; a GIF's is known only by reading every frame.
    count = None if im.format == "GIF" else max(1, int(im.n_frames))
    span = reach if count is None else min(count, reach)
    frames, stop, ended = _walk(im, first, _spread(span, max_frames), orientation, budget, max_pixels)
    if ended and count is None:
        count = stop  # the GIF's real end
    if stop is not None and stop < span:
        # Shorter than the frames it was spread over (a GIF's end, an unreadable or over-budget frame):
        # spread again over the frames that are there.
        span = stop
        try:
            im.seek(0)
            frames, _, _ = _walk(im, first, _spread(span, max_frames), orientation, budget, max_pixels)
        except Exception:  # cannot rewind: keep what the first walk decoded
            frames = [(i, f) for i, f in frames if i < span]
    indices, images = zip(*frames)
    return list(images), Animation(count=count, reached=span, indices=tuple(indices))


def _walk(im: Image.Image, first: Image.Image, indices: tuple[int, ...], orientation: int, budget: int,
          max_pixels: int) -> tuple[list[tuple[int, Image.Image]], int | None, bool]:
    """Step through frames 1 .. max(indices) one at a time (each frame's size is checked before it is
    decoded), keeping those in ``indices`` as RGB. Returns (kept frames, the frame that stopped the walk or
    None, whether that was the file's end)."""
    kept = [(0, first)]
    spent = first.size[0] * first.size[1]
    for f in range(1, max(indices) + 1):
        try:
            im.seek(f)
        except EOFError:
            return kept, f, True
        except Exception:  # a broken frame header, a frame Pillow itself calls a bomb
            return kept, f, False
        w, h = im.size
        if w <= 0 or h <= 0 or w * h > max_pixels or spent + w * h > budget:
            return kept, f, False
        spent += w * h
        try:
            im.load()
            if f in indices:
                kept.append((f, _frame_rgb(im, orientation)))
        except Exception:  # truncated or corrupt frame data, a mode that cannot be converted
            return kept, f, False
    return kept, None, False


def _frame_rgb(im: Image.Image, orientation: int) -> Image.Image:
    """A later frame as the first was made: the file's EXIF orientation, then :func:`to_rgb`; a copy."""
    frame = im.transpose(_ORIENTATIONS[orientation]) if orientation in _ORIENTATIONS else im
    rgb = to_rgb(frame)
    return rgb.copy() if rgb is im else rgb


def _metadata(im: Image.Image, exif: Image.Exif | None) -> ImageMetadata:
    """What Pillow has already read; cheap (a walk over ``info``), nothing is parsed here."""
    text = {str(k): str(v) for k, v in im.info.items() if isinstance(v, str) and isinstance(k, str)}
    xmp = im.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    if exif is not None and _EXIF_IFD in exif:
        try:
            exif.get_ifd(_EXIF_IFD)  # parsed now, while a file is still open (a TIFF's is read lazily)
        except Exception:
            pass  # a broken sub-IFD is no reason to refuse the pixels
    c2pa_box = None
    if im.format in ("JPEG", "MPO") and isinstance(getattr(im, "applist", None), list):
        c2pa_box = any(marker == "APP11" and b"jumb" in data and b"c2pa" in data for marker, data in im.applist)
    elif im.format == "TIFF":
        c2pa_box = exif is not None and _TIFF_C2PA_TAG in exif
    elif im.format == "BMP":
        c2pa_box = False
    return ImageMetadata(format=im.format, text=text, xmp=xmp if isinstance(xmp, bytes) else None,
                         exif=exif if exif else None, c2pa_box=c2pa_box)


# ----------------------------------------------------------------------------- checks


def _check_formats(allowed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    formats = tuple(f.upper() for f in allowed)
    if not formats:
        raise ValueError("allowed_formats is empty")
    Image.init()
    unknown = [f for f in formats if f not in Image.OPEN]
    if unknown:
        raise ValueError(f"Pillow has no plugin for format(s) {unknown}")
    return formats


def _check_byte_count(n: int, max_bytes: int) -> None:
    if n == 0:
        raise DecodeError("empty", "0 bytes")
    if n > max_bytes:
        raise DecodeError("too_large", f"{n:,} bytes exceeds the limit of {max_bytes:,}")


def _check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise DecodeError("empty", f"image of {w}x{h} pixels")
    if w * h > max_pixels:
        raise DecodeError("too_many_pixels",
                          f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}")


def _unidentified(fp, formats: tuple[str, ...]) -> DecodeError:
    """Tell "an allowed format, but broken" (corrupt) from "another format" (unsupported)."""
    fp.seek(0)
    prefix = fp.read(16)
    if not prefix:
        return DecodeError("empty", "0 bytes")
    allowed = ", ".join(formats)
    looks_like = _formats_accepting(prefix)
    ours = [f for f in looks_like if f in formats]
    if ours:
        return DecodeError("corrupt", f"{ours[0]} signature, but the header is corrupt or truncated")
    if looks_like:
        return DecodeError("unsupported_format", f"{looks_like[0]} is not an allowed format ({allowed})")
    return DecodeError("unsupported_format", f"not a recognised image format (allowed: {allowed})")


def _formats_accepting(prefix: bytes) -> list[str]:
    """Pillow formats whose signature check accepts ``prefix``; signature checks parse nothing."""
    Image.init()
    names = []
    for name, (_factory, accept) in Image.OPEN.items():
        if accept is None:
            continue  # a plugin without a signature check would claim anything
        try:
            result = accept(prefix)
        except Exception:
            continue
        if result and not isinstance(result, str):  # a str is Pillow's "looks like it, but no"
            names.append(name)
    return names


def _pillow_bomb_message(exc: Exception) -> str:
    limit = Image.MAX_IMAGE_PIXELS or 0
    if isinstance(exc, Image.DecompressionBombError):
        limit *= 2  # Pillow warns above its limit and refuses above twice that
    return f"more pixels than Pillow's decompression-bomb limit of {limit:,}"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
