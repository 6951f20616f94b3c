"""The registry database: enrol, list, remove, persistence, bad inputs, duplicates, migrations."""

from __future__ import annotations

import io
import sqlite3
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from mimicry.detector.registry import (SCHEMA_VERSION, Registry, RegistryError, default_path, migrate_to,
                               schema_version)


def test_enrol_list_remove(db, encoder, portfolios):
    files = sorted(portfolios["ink"].iterdir())
    with Registry.open(db) as reg:
        report = reg.enrol("Ink Person", files, encoder, consent="signed form 12")
        assert (report.added, report.skipped, report.created) == (len(files), [], True)
        [artist] = reg.list_artists()
        assert (artist.name, artist.works, artist.consent) == ("Ink Person", len(files), "signed form 12")
        assert reg.remove_artist("Ink Person") == len(files)
        assert reg.list_artists() == []
        assert reg.work_count() == 0  # works go with their artist
        with pytest.raises(RegistryError, match="no artist named"):
            reg.remove_artist("Ink Person")


def test_persists_across_reopen_and_keeps_no_originals_by_default(db, encoder, portfolios):
    ink, flat = sorted(portfolios["ink"].iterdir()), sorted(portfolios["flat"].iterdir())
    with Registry.open(db) as reg:
        reg.enrol("Ink", ink[:-1], encoder)
        reg.enrol("Flat", flat[:-1], encoder, keep_originals=True)
    with Registry.open(db) as reg:
        assert [(a.name, a.works) for a in reg.list_artists()] == [("Flat", len(flat) - 1), ("Ink", len(ink) - 1)]
        [m] = reg.match(encoder.embed_one(ink[-1]), k=1)
        assert m.artist == "Ink" and m.nearest_works[0].source.startswith(str(portfolios["ink"]))
        ink_works, flat_works = reg.works("Ink"), reg.works("Flat")
        assert not any(w["original_kept"] for w in ink_works)
        assert reg.original(ink_works[0]["id"]) is None
        by_source = {w["source"]: w for w in flat_works}
        assert reg.original(by_source[str(flat[0])]["id"]) == flat[0].read_bytes()
        thumb = Image.open(io.BytesIO(ink_works[0]["thumbnail"]))
        assert thumb.format == "WEBP" and max(thumb.size) <= 96
    with Registry.open(db) as reg:  # artists are scored as the bound encoder's card says
        assert reg.encoder_identity() == encoder.identity() and reg.aggregate == encoder.aggregate


def test_bad_files_are_reported_skips(db, encoder, portfolios, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(portfolios["flat"].iterdir())[:3]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "truncated.png").write_bytes(good[0].read_bytes()[:200])
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    sources = sorted(folder.iterdir()) + [str(folder / "missing.png")]
    with Registry.open(db) as reg:
        report = reg.enrol("Flat", sources, encoder)
    assert report.added == 3
    codes = {s.rsplit("/", 1)[-1]: code for s, code, _ in report.skipped}
    assert codes == {"truncated.png": "corrupt", "notes.png": "unsupported_format", "empty.png": "empty",
                     "missing.png": "not_found"}


def test_duplicates_are_skipped(db, encoder, portfolios):
    files = sorted(portfolios["hatch"].iterdir())
    with Registry.open(db) as reg:
        reg.enrol("Hatch", files[:4], encoder)
        report = reg.enrol("Hatch", files + [files[-1]], encoder)
        assert report.added == len(files) - 4 and not report.created
        assert sorted(code for _, code, _ in report.skipped) == ["duplicate"] * 5
        assert reg.get_artist("Hatch").works == len(files)


def test_refuses_embeddings_from_another_encoder(db, encoder, portfolios):
    files = sorted(portfolios["ink"].iterdir())
    with Registry.open(db) as reg:
        reg.enrol("Ink", files[:2], encoder)
        reg._conn.execute("UPDATE settings SET value = ? WHERE key = 'encoder'",
                          ('{"name": "other", "version": "9", "onnx_sha256": "' + "0" * 64 + '", "dim": 7}',))
        with pytest.raises(RegistryError, match="cannot be compared"):
            reg.enrol("Ink", files[2:], encoder)
        with pytest.raises(RegistryError, match="does not match the registry"):
            reg.match(np.ones(5, np.float32))


def test_attribution_refuses_a_registry_another_encoder_of_the_same_size_filled(db, encoder, portfolios):
    """Same dimension, other weights: the embeddings would be compared without complaint by size alone."""
    import json

    from mimicry.detector.attribution import Attribution

    with Registry.open(db) as reg:
        reg.enrol("Ink", sorted(portfolios["ink"].iterdir())[:2], encoder)
        Attribution(encoder, reg).close()  # the encoder that filled it is accepted
        other = {**encoder.identity(), "version": "9.9.9", "onnx_sha256": "f" * 64}
        reg._conn.execute("UPDATE settings SET value = ? WHERE key = 'encoder'", (json.dumps(other),))
        with pytest.raises(RegistryError, match="cannot be compared.*mimicry artists reembed"):
            Attribution(encoder, reg)


def test_add_artist_rules(db, encoder, portfolios):
    with Registry.open(db) as reg:
        with pytest.raises(RegistryError, match="no artist named 'Jo'"):
            reg.enrol("Jo", sorted(portfolios["ink"].iterdir()), encoder, create=False)
        assert reg.aggregate == "max"  # no encoder bound yet
        reg.add_artist("Jo", consent="yes")
        with pytest.raises(RegistryError, match="already"):
            reg.add_artist("Jo")
        with pytest.raises(RegistryError, match="non-empty"):
            reg.add_artist("  ")
        assert reg.match(np.ones(8, np.float32)) == []  # nobody has works yet
        with pytest.raises(RegistryError, match="no enrolled works"):
            reg.similarity_to(np.ones(8, np.float32), "Jo")
        with pytest.raises(RegistryError, match="no artist named"):
            reg.similarity_to(np.ones(8, np.float32), "Nobody")


def test_another_connection_sees_changes(db, encoder, portfolios):
    """The in-memory matrix is rebuilt when another process (here: another connection) writes."""
    a, b = Registry.open(db), Registry.open(db)
    try:
        a.enrol("Ink", sorted(portfolios["ink"].iterdir())[:-1], encoder)
        query = encoder.embed_one(sorted(portfolios["flat"].iterdir())[-1])
        assert [m.artist for m in b.match(query, k=5)] == ["Ink"]
        a.enrol("Flat", sorted(portfolios["flat"].iterdir())[:-1], encoder)
        assert b.match(query, k=5)[0].artist == "Flat"
        a.remove_artist("Flat")
        assert [m.artist for m in b.match(query, k=5)] == ["Ink"]
    finally:
        a.close()
        b.close()


def test_threads_share_one_registry(db, encoder, portfolios):
    reg = Registry.open(db)
    reg.enrol("Ink", sorted(portfolios["ink"].iterdir()), encoder)
    query = encoder.embed_one(sorted(portfolios["ink"].iterdir())[0])
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(30):
                assert reg.match(query, k=2)[0].artist in ("Ink", "Pastel")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    reg.enrol("Pastel", sorted(portfolios["pastel"].iterdir()), encoder)
    for t in threads:
        t.join()
    reg.close()
    assert errors == []


def test_default_path_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MIMICRY_REGISTRY", str(tmp_path / "x.sqlite3"))
    assert default_path() == tmp_path / "x.sqlite3"
    monkeypatch.delenv("MIMICRY_REGISTRY")
    monkeypatch.setenv("MIMICRY_HOME", str(tmp_path / "home"))  # the one per-user data folder
    assert default_path() == tmp_path / "home" / "registry.sqlite3"
    monkeypatch.delenv("MIMICRY_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if sys.platform.startswith("linux"):
        assert default_path() == tmp_path / "data" / "mimicry" / "registry.sqlite3"


def test_migrates_from_version_1(db):
    conn = sqlite3.connect(str(db), isolation_level=None)
    assert migrate_to(conn, 1) == 1
    conn.execute("INSERT INTO artists (name, consent, created_at) VALUES ('Old', 'note', '2025-01-01')")
    emb = np.ones(4, "<f4") / 2
    conn.execute("INSERT INTO works (artist_id, sha256, embedding, thumbnail, created_at) "
                 "VALUES (1, ?, ?, x'00', '2025-01-01')", ("a" * 64, emb.tobytes()))
    assert [r[0] for r in conn.execute("PRAGMA table_info(works)")].count("source") == 0
    conn.close()
    with Registry.open(db) as reg:
        assert schema_version(reg._conn) == SCHEMA_VERSION == 4
        assert [(a.name, a.works, a.consent) for a in reg.list_artists()] == [("Old", 1, "note")]
        [m] = reg.match(emb, k=1)
        assert m.artist == "Old" and m.similarity == pytest.approx(1.0)
        assert reg.works("Old")[0]["source"] == ""
        versions = reg._conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(1,), (2,), (3,), (4,)]


def test_refuses_newer_or_foreign_databases(db, tmp_path):
    with Registry.open(db) as reg:
        reg._conn.execute("INSERT INTO schema_version VALUES (99, 'future', '2030-01-01')")
    with pytest.raises(RegistryError, match="newer than this version"):
        Registry.open(db)
    foreign = tmp_path / "other.sqlite3"
    sqlite3.connect(str(foreign)).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(RegistryError, match="not a mimicry registry"):
        Registry.open(foreign)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match="not a usable registry"):
        Registry.open(junk)


def _other_encoder(tmp_path, encoder):
    """The bundled encoder's graph with a finer palette: another encoder (other name, other size)."""
    import json
    import shutil

    from mimicry.detector.style import StyleEncoder

    folder = tmp_path / "other-encoder"
    shutil.copytree(encoder.path, folder)
    card = json.loads((folder / "model.json").read_text())
    card["name"] += "-palette2"
    card["palette"]["bins"] = 2
    (folder / "model.json").write_text(json.dumps(card))
    return StyleEncoder.from_dir(folder, intra_op_threads=1)


def test_reembed_moves_a_registry_to_another_encoder_from_originals_or_thumbnails(db, encoder, portfolios, tmp_path):
    from mimicry.detector.attribution import Attribution

    ink, flat = sorted(portfolios["ink"].iterdir()), sorted(portfolios["flat"].iterdir())
    other = _other_encoder(tmp_path, encoder)
    assert other.dim != encoder.dim
    with Registry.open(db) as reg:
        reg.enrol("Ink", ink[:-1], encoder)
        reg.enrol("Flat", flat[:-1], encoder, keep_originals=True)
        with pytest.raises(RegistryError) as refused:
            Attribution(other, reg)
        assert refused.value.code == "other_encoder"
        report = reg.reembed(other)
        assert (report.works, report.from_originals, report.from_thumbnails) == (2 * 7, 7, 7)
        Attribution(other, reg).close()  # bound to the new encoder now
        with pytest.raises(RegistryError):
            Attribution(encoder, reg)
        stored = {src: np.frombuffer(bytes(e), "<f4") for src, e in
                  reg._execute("SELECT source, embedding FROM works").fetchall()}
        for f in flat[:-1]:  # from the kept original: exactly what enrolling with the new encoder gives
            np.testing.assert_allclose(stored[str(f)], other.embed_one(f), atol=1e-6)
        for f in ink[:-1]:  # from the 96-px thumbnail: close to it, not equal
            assert float(stored[str(f)] @ other.embed_one(f)) > 0.9
        assert reg.match(other.embed_one(ink[-1]), k=1)[0].artist == "Ink"
        assert reg.match(other.embed_one(flat[-1]), k=1)[0].artist == "Flat"


def test_reembed_is_all_or_nothing(db, encoder, portfolios, tmp_path):
    ink = sorted(portfolios["ink"].iterdir())
    other = _other_encoder(tmp_path, encoder)
    with Registry.open(db) as reg:
        reg.enrol("Ink", ink, encoder)
        before = reg._execute("SELECT id, embedding FROM works ORDER BY id").fetchall()
        reg._conn.execute("UPDATE works SET thumbnail = ? WHERE id = ?", (b"not an image", before[2][0]))
        with pytest.raises(RegistryError, match="1 of 8 works could not be embedded again") as failed:
            reg.reembed(other)
        assert failed.value.code == "reembed_failed"
        assert reg._execute("SELECT id, embedding FROM works ORDER BY id").fetchall() == before
        reg.check_encoder(encoder.identity())  # still bound to the encoder that filled it
