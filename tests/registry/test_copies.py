"""Copies of enrolled works: found as that work whatever the style score, other works are not, and
registries made before copy signatures get them on open."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimicry.detector import copies
from mimicry.detector.decode import decode_image
from mimicry.detector.registry import SCHEMA_VERSION, Registry, make_thumbnail, migrate_to

OPENCLIPART = Path("/usr/share/openclipart/png")


def _jpeg75(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=75)
    return buf.getvalue()


def _half(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.resize((image.width // 2, image.height // 2), Image.Resampling.BICUBIC).save(buf, "PNG")
    return buf.getvalue()


def _ask(reg: Registry, encoder, data) -> copies.CopyMatch | None:
    x, image = encoder.load(data)  # as `mimicry check` and the service decode: once, for both
    return reg.find_copy(reg.copy_signature(image), encoder.embed_arrays(x[None])[0])


@pytest.fixture
def works(portfolios) -> dict[str, list[Path]]:
    return {s: sorted(portfolios[s].iterdir()) for s in ("ink", "flat", "pastel")}


def test_copies_are_found_as_that_work(db, encoder, works):
    """An exact, a JPEG-75 and a half-size copy of an enrolled work are that work, by that artist."""
    with Registry.open(db) as reg:
        for style in ("ink", "flat"):
            reg.enrol(style.title(), works[style][:6], encoder)
        ids = {w["source"]: w["id"] for a in ("Ink", "Flat") for w in reg.works(a)}
        for path in works["ink"][:3] + works["flat"][:3]:
            image = decode_image(str(path))
            for how, data in (("exact", path.read_bytes()), ("jpeg75", _jpeg75(image)), ("half", _half(image))):
                found = _ask(reg, encoder, data)
                assert found is not None, (path.name, how)
                assert (found.work_id, found.source) == (ids[str(path)], str(path)), (path.name, how)
                assert found.artist == ("Ink" if "ink" in path.name else "Flat")
                assert 0 <= found.distance <= copies.COPY_DISTANCE
            assert _ask(reg, encoder, path.read_bytes()).distance == pytest.approx(0.0, abs=1e-6)


def test_other_works_are_not_copies(db, encoder, works):
    """New works by an enrolled artist (same style, other subjects) and works of a style nobody
    enrolled are no copies, even where the style matches."""
    with Registry.open(db) as reg:
        reg.enrol("Ink", works["ink"][:6], encoder)
        reg.enrol("Flat", works["flat"][:6], encoder)
        for path in works["ink"][6:] + works["flat"][6:] + works["pastel"]:
            assert _ask(reg, encoder, path.read_bytes()) is None, path.name
            image = decode_image(str(path))
            assert _ask(reg, encoder, _jpeg75(image)) is None, path.name


def _drawing(ink: tuple[int, int, int]) -> Image.Image:
    from PIL import ImageDraw

    image = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(image)
    for i in range(6):
        draw.ellipse((10 + 22 * i, 15 + 8 * i, 40 + 22 * i, 60 + 8 * i), outline=ink, width=4)
    draw.rectangle((20, 90, 140, 110), fill=ink)
    return image


def test_of_two_works_alike_in_grey_a_copy_is_found_as_the_one_of_its_colour(db, encoder, tmp_path):
    """One drawing enrolled in red and in a green of the same grey level: the grey test passes both
    alike, so which one a copy is of is told by colour (stage 3), whichever was enrolled first."""
    red, green = _drawing((255, 0, 0)), _drawing((0, 130, 0))
    paths = []
    for name, image in (("red", red), ("green", green)):
        paths.append(tmp_path / f"{name}.png")
        image.save(paths[-1])
    q_red, q_green = (copies.signature(decode_image(_jpeg75(im))) for im in (red, green))
    sig_red = copies.signature(red)
    assert abs(copies.distance(q_green.thumb, sig_red.thumb) - copies.distance(q_red.thumb, sig_red.thumb)) < 0.02
    with Registry.open(db) as reg:
        reg.enrol("Ink", paths, encoder)
        for image, name in ((red, "red"), (green, "green")):
            found = _ask(reg, encoder, _jpeg75(image))
            assert found is not None and Path(found.source).stem == name
        # Without the query's colour view the registry falls back on the grey test: one of the two.
        assert reg.find_copy(copies.signature(decode_image(_jpeg75(green)))) is not None
        # The colour view is made only for a query near two or more works by hash.
        assert reg.copy_signature(decode_image(_jpeg75(green))).colour is not None
        noise = Image.fromarray(np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8))
        assert reg.copy_signature(noise).colour is None


def test_a_plain_image_is_nobodys_copy(db, encoder, works):
    blank = Image.new("RGB", (96, 96), "white")
    with Registry.open(db) as reg:
        reg.enrol("Ink", works["ink"][:2] + [blank], encoder)
        assert reg.work_count() == 3
        assert not copies.signature(blank).detailed
        assert reg.find_copy(copies.signature(blank)) is None


@pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="needs Debian's openclipart-png (make test installs it)")
def test_openclipart_copies_and_lookalikes(db, encoder):
    """Real clip art: transparent PNGs on white, which hash alike. Each enrolled work's copies are
    found as it; other clip art is not. (The same smiley with another mouth, smiley104 against
    smiley103, is within the threshold: BENCHMARKS.md counts such look-alikes.)"""
    files = sorted((OPENCLIPART / "people" / "smilies").glob("smiley1*.png"))[:4]
    others = sorted((OPENCLIPART / "animals").rglob("*.png"))[:6]
    assert len(files) == 4 and len(others) == 6
    with Registry.open(db) as reg:
        reg.enrol("Smilies", files, encoder)
        for path in files:
            image = decode_image(str(path))
            for data in (path.read_bytes(), _jpeg75(image), _half(image)):
                found = _ask(reg, encoder, data)
                assert found is not None and found.source == str(path), path.name
        for path in others:
            assert _ask(reg, encoder, path.read_bytes()) is None, path.name


@pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="needs Debian's openclipart-png (make test installs it)")
def test_a_half_size_copy_of_a_small_icon_is_found(db, encoder):
    """An 84-px flag halved to 42 px: its 32-px thumbnail is a stretch, not an average, and at 32 px it
    was 0.26 from its work (past the threshold); small queries are also compared at 16 px."""
    flag = OPENCLIPART / "signs_and_symbols" / "flags" / "signalflag_quebec.png"
    image = decode_image(str(flag))
    assert image.size == (84, 84)
    half = decode_image(_half(image))
    assert copies.distance(copies.signature(image).thumb, copies.signature(half).thumb) > copies.COPY_DISTANCE
    with Registry.open(db) as reg:
        reg.enrol("Flags", [flag, *sorted(flag.parent.glob("signalflag_[a-o]*.png"))[:6]], encoder)
        found = _ask(reg, encoder, _half(image))
        assert found is not None and found.source == str(flag)


def test_halving_a_thumbnail_averages_each_two_by_two_block():
    thumb = np.arange(copies.SIDE * copies.SIDE, dtype=np.uint16).reshape(copies.SIDE, copies.SIDE) % 251
    half = np.frombuffer(copies.halve(thumb.astype(np.uint8).tobytes()), np.uint8).reshape(copies.SIDE // 2, -1)
    assert half[0, 0] == round((thumb[0, 0] + thumb[0, 1] + thumb[1, 0] + thumb[1, 1]) / 4)
    assert half.shape == (16, 16)


def test_registries_of_version_3_get_signatures(db, encoder, works):
    """Migration 4 makes each work's signature from its kept original, else from its thumbnail; a
    work with neither that decodes has none and is never found (nor breaks anything)."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    assert migrate_to(conn, 3) == 3
    conn.execute("INSERT INTO artists (name, consent, created_at, name_key) VALUES ('Old', '', '2025-01-01', 'old')")
    rows = []
    for i, path in enumerate(works["flat"][:3]):
        image = decode_image(str(path))
        emb = encoder.embed_one(str(path))
        original = path.read_bytes() if i == 0 else None
        thumbnail = make_thumbnail(image) if i < 2 else b"not webp"
        rows.append((1, f"{i:064d}", emb.astype("<f4").tobytes(), thumbnail, "2025-01-01", str(path), original))
    conn.executemany("INSERT INTO works (artist_id, sha256, embedding, thumbnail, created_at, source, original) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    with Registry.open(db) as reg:
        assert migrate_to(reg._conn) == SCHEMA_VERSION == 4
        signed = reg._conn.execute("SELECT source, copy_thumb IS NOT NULL FROM works ORDER BY id").fetchall()
        assert [s for _, s in signed] == [1, 1, 0]
        kept, from_thumbnail, broken = works["flat"][:3]
        assert _ask(reg, encoder, kept.read_bytes()).distance == pytest.approx(0.0, abs=1e-6)
        found = _ask(reg, encoder, from_thumbnail.read_bytes())  # from a 96 px WebP: close, not equal
        assert found is not None and found.source == str(from_thumbnail)
        assert _ask(reg, encoder, broken.read_bytes()) is None


def test_distance_and_hamming():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, copies.SIDE * copies.SIDE, dtype=np.uint8)
    assert copies.distance(a.tobytes(), a.tobytes()) == 0.0
    assert copies.distance(a.tobytes(), (255 - a).tobytes()) == pytest.approx(1.0)
    other = rng.integers(0, 256, a.size, dtype=np.uint8)
    assert 0.6 < copies.distance(a.tobytes(), other.tobytes()) < 0.8  # unrelated: about 1/sqrt(2)
    both = copies.distance(a.tobytes(), np.stack([a, other]))
    assert both.shape == (2,) and both[0] == 0.0
    assert copies.hamming(np.array([0b1011, 0], np.uint64), 0b0001).tolist() == [2, 1]
