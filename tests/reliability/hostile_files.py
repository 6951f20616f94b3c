"""A corpus of hostile and odd inputs, made on the spot with Pillow and numpy.

:func:`make_corpus` writes the files into a folder and returns, for each file name, what the
product must answer: ``"ok"`` (a real image, however odd, gets a verdict) or the decode error code
(``mimicry.detector.decode.ERROR_CODES``) it must be refused with. Nothing here is downloaded.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# decode error code -> HTTP status of POST /v1/detect (service.errors.DECODE_STATUS)
OK = "ok"


def _noise(size=(96, 96), seed=0, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height over a tiny zlib stream (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # 1 MB of zeros compresses to ~1 KB: the data would expand a thousandfold before the header is checked
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 2**20, 9))
            + _png_chunk(b"IEND", b""))


def gif_bomb(width: int, height: int) -> bytes:
    """A GIF whose logical screen and frame declare width x height with one tiny LZW block."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def tiff_bomb(width: int, height: int) -> bytes:
    """A little-endian TIFF whose IFD declares width x height, with one byte of strip data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 9) + b"\x00" + ifd


def animated_gif(frames: int) -> bytes:
    # Each frame a different grey from the one before: Pillow merges identical neighbours into one frame
    # (palette images of one index each, as this used to make, came out a 1-frame GIF).
    ims = [Image.new("L", (48, 48), i % 256) for i in range(frames)]
    return _encode(ims[0], "GIF", save_all=True, append_images=ims[1:], duration=10, loop=0)


def animated_webp(frames: int) -> bytes:
    ims = [Image.new("RGB", (48, 48), (i % 256, 0, 0)) for i in range(frames)]
    return _encode(ims[0], "WEBP", save_all=True, append_images=ims[1:], duration=10, lossless=True)


def exif_rotated_jpeg() -> bytes:
    im = _noise((120, 60), seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    return _encode(im, "JPEG", exif=exif.tobytes())


def make_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus into ``folder``; return {file name: "ok" or the expected error code}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    noisy = _noise()
    png, jpeg, webp = _encode(noisy, "PNG"), _encode(noisy, "JPEG", quality=90), _encode(noisy, "WEBP", quality=80)
    gif = _encode(noisy.convert("P"), "GIF")
    cmyk = _encode(noisy.convert("CMYK"), "JPEG")
    palette_t = Image.new("P", (64, 64), 0)
    palette_t.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette_t.info["transparency"] = 0
    psd = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 10, 10, 8, 3) + b"\x00" * 64
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
    zip_tail = b"PK\x03\x04" + rng.bytes(200) + b"PK\x05\x06" + b"\0" * 18
    cases: dict[str, tuple[bytes, str]] = {
        # broken files
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt"),
        "truncated.png": (png[: len(png) // 2], "corrupt"),
        "truncated.webp": (webp[: len(webp) // 2], "corrupt"),
        "truncated.gif": (gif[: len(gif) // 3], "corrupt"),
        "header_only.png": (png[:33], "corrupt"),
        "bad_crc.png": (png[:40] + bytes([png[40] ^ 0xFF]) + png[41:], "corrupt"),
        "zero_bytes.png": (b"", "empty"),
        "random_bytes.jpg": (rng.bytes(4096), "unsupported_format"),
        "text_named.png": (b"I am a shopping list, not a picture.\n" * 20, "unsupported_format"),
        # bombs: refused from the header, before any pixel is decoded
        "bomb_50k.png": (png_bomb(50_000, 50_000), "too_many_pixels"),
        "bomb_65k.gif": (gif_bomb(65_535, 65_535), "too_many_pixels"),
        "bomb_100k.tif": (tiff_bomb(100_000, 100_000), "too_many_pixels"),
        # many frames: a few are scored, spread over those a pixel budget reaches (detector/decode.py)
        "frames_5000.gif": (animated_gif(5000), OK),
        "frames_2000.webp": (animated_webp(2000), OK),
        # odd but real images
        "cmyk.jpg": (cmyk, OK),
        "grey16.png": (_encode(Image.fromarray(rng.integers(0, 65535, (48, 48)).astype(np.uint16)), "PNG"), OK),
        "palette_transparent.png": (_encode(palette_t, "PNG"), OK),
        "exif_rotated.jpg": (exif_rotated_jpeg(), OK),
        "rgba.webp": (_encode(_noise(mode="RGBA"), "WEBP", lossless=True), OK),
        "one_bit.bmp": (_encode(noisy.convert("1"), "BMP"), OK),
        # formats outside the allow-list (Pillow could parse them; we don't let it)
        "layered.psd": (psd, "unsupported_format"),
        "vector.eps": (eps, "unsupported_format"),
        "psd_named.png": (psd, "unsupported_format"),
        # TIFF variants
        "lzw.tif": (_encode(noisy, "TIFF", compression="tiff_lzw"), OK),
        "deflate.tif": (_encode(noisy, "TIFF", compression="tiff_adobe_deflate"), OK),
        "jpeg_in.tif": (_encode(noisy, "TIFF", compression="jpeg"), OK),
        "cmyk.tif": (_encode(noisy.convert("CMYK"), "TIFF"), OK),
        "multipage.tif": (_encode(noisy, "TIFF", save_all=True, append_images=[_noise(seed=1), _noise(seed=2)]), OK),
        "truncated.tif": (_encode(noisy, "TIFF")[:300], "corrupt"),
        # polyglots: a real image with something else riding along; it gets a verdict and is not stored
        "gifar.gif": (gif + zip_tail, OK),
        "png_with_html.png": (png + b"<html><script>alert(1)</script></html>", OK),
        "jpeg_with_php_comment.jpg": (jpeg[:2] + b"\xff\xfe\x00\x1b<?php system($_GET[c]); ?>\n" + jpeg[2:], OK),
    }
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    return {name: expected for name, (_, expected) in cases.items()}
