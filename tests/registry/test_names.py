"""Artist names: normalised, unique ignoring case and Unicode form, look-alikes and invisible
characters refused; one file belongs to one artist; registries written before these rules still
open; a removed artist leaves no bytes behind; the database files are private to their owner."""

from __future__ import annotations

import os
import sqlite3
import stat
import unicodedata

import numpy as np
import pytest

from mimicry.detector.registry import Registry, RegistryError, migrate_to, name_key, normalise_name

NFC_CAFE = unicodedata.normalize("NFC", "Café")
NFD_CAFE = unicodedata.normalize("NFD", "Café")


def test_names_are_normalised_and_unique_ignoring_case_and_form(db):
    assert NFC_CAFE != NFD_CAFE
    with Registry.open(db) as reg:
        created = reg.add_artist("  " + NFD_CAFE + "\u00a0 Noir ")  # NFD, padded, a no-break space inside
        assert created.name == NFC_CAFE + " Noir"
        for same in (NFC_CAFE + " Noir", NFD_CAFE + " noir", "CAFÉ  NOIR", " café noir", "ＣＡＦÉ Noir"):
            with pytest.raises(RegistryError, match="already") as info:
                reg.add_artist(same)
            assert info.value.code == "artist_exists"
            assert reg.get_artist(same).name == NFC_CAFE + " Noir"  # the same artist, found by any form
        assert [a.name for a in reg.list_artists()] == [NFC_CAFE + " Noir"]
        assert reg.remove_artist("café NOIR") == 0
        assert reg.list_artists() == []


@pytest.mark.parametrize("name, reason", [
    ("J\u0430ne", "mixes scripts"),  # a Cyrillic a among Latin letters
    ("Jane\u200bDoe", "invisible"),  # zero-width space
    ("Jane\u00adDoe", "invisible"),  # soft hyphen
    ("Jane\u202eeoD", "invisible"),  # right-to-left override
    ("Jane\x1b[31m", "invisible"),  # an escape sequence
    ("Jane\nDoe", "invisible"),
    ("Jane\ufe0f", "invisible"),  # a variation selector
    ("\u3164", "invisible"),  # Hangul filler: a letter that shows nothing
    ("a//b", "part"),
    ("a/../b", "part"),
    ("Jane/works", "part"),  # would be a route of the HTTP API
    ("x" * 201, "200"),
    ("   ", "non-empty"),
])
def test_lookalike_invisible_and_unaddressable_names_are_refused(name, reason):
    with pytest.raises(RegistryError, match=reason) as info:
        normalise_name(name)
    assert info.value.code == "invalid_name"


@pytest.mark.parametrize("name", ["Иван Петров", "山田 太郎", "やまだ たろう", "김민준", "Nguyễn Văn An", "Σοφία",
                                  "O'Keeffe-Smith", "Studio/Jane", "[/]", "Jane Doe 2", "José Ortega y Gasset",
                                  "Ōtomo Katsuhiro", "محمد", "Jane Doe (山田)"])
def test_names_in_one_script_are_accepted(name):
    assert normalise_name(name) == unicodedata.normalize("NFC", name)


def test_a_whole_script_lookalike_of_an_enrolled_name_is_refused(db):
    with Registry.open(db) as reg:
        reg.add_artist("Cece Kox")
        with pytest.raises(RegistryError, match="too close") as info:
            reg.add_artist("Сесе Кох")  # all Cyrillic, drawn like the Latin name
        assert info.value.code == "artist_exists"
        reg.add_artist("Иван Петров")  # a Cyrillic name that looks like no enrolled one
    assert name_key("Сесе Кох") == name_key("cece kox")


def test_one_file_belongs_to_one_artist(db, encoder, portfolios):
    files = sorted(portfolios["ink"].iterdir())
    with Registry.open(db) as reg:
        assert reg.enrol("Secret Person", files[:3], encoder).added == 3
        report = reg.enrol("Other", files[2:5], encoder)
        assert report.added == 2 and report.created
        [(source, code, message)] = report.skipped
        assert source == str(files[2]) and code == "enrolled_elsewhere"
        assert "another artist" in message and "Secret" not in message
        assert reg.get_artist("Other").works == 2 and reg.get_artist("Secret Person").works == 3


def _old_registry(db, names: list[str]) -> None:
    """A registry as version 2 of the schema left it, with names its rules allowed."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    assert migrate_to(conn, 2) == 2
    for i, name in enumerate(names):
        conn.execute("INSERT INTO artists (name, consent, created_at) VALUES (?, '', '2025-01-01')", (name,))
        emb = np.zeros(4, "<f4")
        emb[i % 4] = 1
        conn.execute("INSERT INTO works (artist_id, sha256, embedding, thumbnail, created_at, source) "
                     "VALUES (?, ?, ?, x'00', '2025-01-01', 'w.png')", (i + 1, f"{i:064x}", emb.tobytes()))
    conn.close()


def test_a_registry_with_names_from_before_the_rules_still_opens(db, tmp_path):
    old = [NFD_CAFE, NFC_CAFE, "Bob\u200b", "jane doe", "Jane Doe"]  # all allowed before, none now
    _old_registry(db, old)
    with Registry.open(db) as reg:
        assert sorted(a.name for a in reg.list_artists()) == sorted(old)
        for name in old:  # every one is still reached by its stored name
            assert reg.get_artist(name).name == name and reg.get_artist(name).works == 1
        assert reg.get_artist("CAFÉ").name in (NFD_CAFE, NFC_CAFE)  # and by any form of it
        assert reg.get_artist("bob").name == "Bob\u200b"
        assert [m.artist for m in reg.match(np.array([0, 0, 1, 0], np.float32), k=1)] == ["Bob\u200b"]
        with pytest.raises(RegistryError, match="already"):
            reg.add_artist("BOB")
        assert reg.remove_artist("Jane Doe") == 1  # the exact name wins over a look-alike
        assert reg.get_artist("JANE DOE").name == "jane doe"
    with Registry.open(db) as reg:  # opened again: nothing left to migrate
        assert len(reg.list_artists()) == 4


def _files_bytes(db) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def _pieces(blob: bytes) -> list[bytes]:
    """32-byte pieces of a blob, every 256 bytes (a blob may be split across database pages)."""
    return [blob[i:i + 32] for i in range(0, len(blob) - 32, 256)]


def test_a_removed_artist_leaves_no_thumbnail_or_original_bytes(db, encoder, portfolios):
    files = sorted(portfolios["pastel"].iterdir())
    with Registry.open(db) as reg:
        reg.enrol("Keep", sorted(portfolios["flat"].iterdir())[:2], encoder)
        reg.enrol("Gone", files[:3], encoder, keep_originals=True)
        thumbs = [w["thumbnail"] for w in reg.works("Gone")]
        originals = [f.read_bytes() for f in files[:3]]
        there = _files_bytes(db)
        for blob in thumbs + originals:  # the test can see them while they are there
            assert any(piece in there for piece in _pieces(blob))
        assert reg.remove_artist("Gone") == 3
        left = _files_bytes(db)  # the database, its -wal and -shm, with the connection still open
        for blob in thumbs + originals:
            assert not any(piece in left for piece in _pieces(blob))
        assert reg.get_artist("Keep").works == 2


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_registry_files_and_new_folders_are_private(tmp_path, encoder, portfolios):
    old = os.umask(0o022)
    try:
        db = tmp_path / "new" / "data" / "registry.sqlite3"
        with Registry.open(db) as reg:
            reg.enrol("Ink", sorted(portfolios["ink"].iterdir())[:2], encoder)
            made = [p for p in db.parent.iterdir()]
            assert {p.name for p in made} >= {"registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm"}
            for p in made:
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        for folder in (db.parent, db.parent.parent):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    finally:
        os.umask(old)
