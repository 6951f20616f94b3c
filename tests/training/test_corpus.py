"""The demo corpus: cataloguing openclipart-style PNGs and normalising art exactly once."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from mimicry.training.corpus import (OPENCLIPART_ROOT, build_corpus, caption_for, encode_png, is_blank,
                             normalize_artwork, scan_catalogue, slugify)


def png_with_text(path: Path, image: Image.Image, **text: str) -> None:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, pnginfo=info)


def huge_png_header(path: Path, w: int, h: int) -> None:
    """A PNG that declares w x h pixels but holds one tiny IDAT: a decompression-bomb header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    text = b"Author\x00Bomb Maker"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", text)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def test_scan_reads_author_title_category_and_skips_what_cannot_be_used(tmp_path):
    art = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    png_with_text(tmp_path / "animals" / "cat_a.png", art, Author="Ann Artist", Title="Happy cat")
    # UTF-8 bytes written into a Latin-1 tEXt chunk, as many authors' tools did.
    png_with_text(tmp_path / "food" / "pie.png", art, Author="Moisés".encode().decode("latin-1"), Title="pie")
    png_with_text(tmp_path / "misc" / "anon.png", art, Title="no author")
    png_with_text(tmp_path / "misc" / "tiny.png", Image.new("RGB", (20, 20)), Author="Ann Artist")
    (tmp_path / "misc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    huge_png_header(tmp_path / "misc" / "bomb.png", 20000, 20000)

    works, skipped = scan_catalogue(tmp_path)

    assert [(w.author, w.title, w.category) for w in works] == [("Ann Artist", "Happy cat", "animals"),
                                                               ("Moisés", "pie", "food")]
    reasons = {Path(s["path"]).name: s["reason"] for s in skipped}
    assert reasons["anon.png"] == "no Author chunk"
    assert "smaller than" in reasons["tiny.png"]
    assert reasons["broken.png"].startswith("unreadable")
    assert "exceeds" in reasons["bomb.png"]
    assert works[0].caption == "clip art of happy cat, animals"


def test_scan_says_how_to_get_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="openclipart-png"):
        scan_catalogue(tmp_path / "absent")


@pytest.mark.parametrize("mode", ["RGBA", "P-transparent", "LA", "L", "I;16", "CMYK", "RGB"])
def test_normalize_gives_one_format_whatever_comes_in(mode):
    rgba = Image.new("RGBA", (60, 30), (0, 0, 0, 0))
    rgba.paste((200, 30, 30, 255), (10, 5, 50, 25))
    if mode == "RGBA":
        im = rgba
    elif mode == "P-transparent":
        im = rgba.convert("P")
        im.info["transparency"] = im.getpixel((0, 0))
    elif mode == "I;16":
        im = Image.fromarray((np.arange(60 * 30).reshape(30, 60) * 30).astype(np.uint16))
    else:
        im = rgba.convert(mode)
    out = normalize_artwork(im, 32)
    assert out.mode == "RGB" and out.size == (32, 32)
    arr = np.asarray(out)
    if mode in ("RGBA", "P-transparent", "LA"):
        assert (arr[0, 0] == 255).all(), "transparent page must become white"
        if mode == "LA":
            assert arr[16, 16].max() < 120, "the shape stays ink, not page"
        else:
            assert arr[16, 16, 0] > 150 and arr[16, 16, 1] < 100, "the red shape keeps its colour"
    if mode == "I;16":
        assert arr.max() > 200 and arr[10:20].min() < 255, "16-bit range scaled, not clipped to white"


def test_normalize_pads_to_a_centred_square_on_white():
    im = Image.new("RGB", (40, 10), (0, 0, 255))
    arr = np.asarray(normalize_artwork(im, 40))
    assert (arr[:10] == 255).all() and (arr[-10:] == 255).all()
    assert (arr[18:22, :, 2] > 200).all() and (arr[18:22, :, 0] < 50).all()


def test_normalize_applies_exif_orientation():
    im = Image.new("RGB", (40, 20), "white")
    im.paste((0, 0, 0), (0, 0, 10, 20))  # black band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    import io
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    out = np.asarray(normalize_artwork(Image.open(buf), 40))
    assert out[:8, 20].mean() < 80, "after rotation the dark band is at the top"


def test_helpers():
    assert slugify("Gerald G.") == "gerald_g" and slugify("yves GUILLOU") == "yves_guillou"
    assert caption_for("red_apple-01", "food/fruit") == "clip art of red apple 01, food fruit"
    assert is_blank(Image.new("RGB", (8, 8), "white")) and not is_blank(normalize_artwork(Image.new("RGB", (8, 4), "red"), 8))
    png = encode_png(Image.new("RGB", (8, 8)))
    assert Image.open(__import__("io").BytesIO(png)).info == {}


def test_build_corpus_writes_credited_rows_and_skips_blank_pages(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    for i in range(4):
        arr = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
        png_with_text(src / "cat" / f"w{i}.png", Image.fromarray(arr), Author="Ann Artist", Title=f"work {i}")
    png_with_text(src / "cat" / "blank.png", Image.new("RGBA", (50, 50), (0, 0, 0, 0)), Author="Ann Artist")
    works, _ = scan_catalogue(src)
    rows = build_corpus(tmp_path / "out", ["Ann Artist"], works, 32, max_works=10)
    assert len(rows) == 4  # the blank page is not a work
    for r in rows:
        assert r["license"].startswith("Public domain") and r["artist"] == "Ann Artist" and r["source"].endswith(".png")
        with Image.open(tmp_path / "out" / r["path"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (32, 32))
    assert (tmp_path / "out" / "real_manifest.jsonl").read_text().count("\n") == 4


@pytest.mark.skipif(not OPENCLIPART_ROOT.is_dir(), reason="Debian package openclipart-png not installed")
def test_the_demo_artists_have_enough_works_in_the_package():
    from mimicry.training.corpus import DEMO_ARTISTS

    works, skipped = scan_catalogue()
    counts = {a: sum(w.author == a for w in works) for a in DEMO_ARTISTS}
    assert all(n >= 32 for n in counts.values()), counts
    assert any("exceeds" in s["reason"] for s in skipped), "the package's bomb-sized PNGs are skipped, not decoded"
