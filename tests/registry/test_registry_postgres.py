"""The registry on PostgreSQL, the database that several replicas of the service share: the SQLite
tests that use only the public interface, run again on a real server started by the test session,
and what only a shared server shows (replicas migrating, enrolling and matching at once, a replica
killed mid-enrolment, two services on one registry)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from registry_fixtures import REPO
from test_registry_crash import _child

from mimicry.detector.registry import SCHEMA_VERSION, Registry, RegistryError, migrate_to, schema_version

# These run here with this module's `db` (a PostgreSQL URL) in place of the conftest's SQLite file.
from test_names import (  # noqa: F401  (collected again in this module)
    test_a_whole_script_lookalike_of_an_enrolled_name_is_refused,
    test_names_are_normalised_and_unique_ignoring_case_and_form,
    test_one_file_belongs_to_one_artist,
)
from test_registry_db import (  # noqa: F401  (collected again in this module)
    test_add_artist_rules,
    test_another_connection_sees_changes,
    test_bad_files_are_reported_skips,
    test_duplicates_are_skipped,
    test_enrol_list_remove,
    test_persists_across_reopen_and_keeps_no_originals_by_default,
    test_reembed_moves_a_registry_to_another_encoder_from_originals_or_thumbnails,
    test_threads_share_one_registry,
)


@pytest.fixture
def db(pg_url) -> str:
    return pg_url


def test_missing_server_binaries_are_named(monkeypatch):
    """Without Debian's postgresql package the PostgreSQL tests fail saying what to install."""
    import pg_server

    monkeypatch.setattr(pg_server.glob, "glob", lambda pattern: [])
    with pytest.raises(RuntimeError, match="install Debian's 'postgresql' package"):
        pg_server.find_bin_dir()


def _connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_tables_and_types(db):
    with Registry.open(db) as reg:
        assert reg._dialect.name == "postgresql" and reg.path == db
        columns = dict(reg._conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'works'").fetchall())
    assert columns["embedding"] == columns["thumbnail"] == columns["original"] == "bytea"
    assert columns["id"] == columns["artist_id"] == "bigint"


def test_refuses_embeddings_from_another_encoder(db, encoder, portfolios):
    files = sorted(portfolios["ink"].iterdir())
    with Registry.open(db) as reg:
        reg.enrol("Ink", files[:2], encoder)
        other = {"name": "other", "version": "9", "onnx_sha256": "0" * 64, "dim": 7}
        reg._conn.execute("UPDATE settings SET value = %s WHERE key = 'encoder'", (json.dumps(other),))
        with pytest.raises(RegistryError, match="cannot be compared"):
            reg.enrol("Ink", files[2:], encoder)
        assert reg.get_artist("Ink").works == 2
        with pytest.raises(RegistryError, match="does not match the registry"):
            reg.match(np.ones(5, np.float32))


def test_migrates_from_version_1_and_refuses_newer_or_foreign_databases(pg_server, db):
    with _connect(db) as conn:
        assert migrate_to(conn, 1) == 1
        conn.execute("INSERT INTO artists (name, consent, created_at) VALUES ('Old', 'note', '2025-01-01')")
        emb = np.ones(4, "<f4") / 2
        conn.execute("INSERT INTO works (artist_id, sha256, embedding, thumbnail, created_at) "
                     "VALUES (1, %s, %s, '\\x00', '2025-01-01')", ("a" * 64, emb.tobytes()))
    with Registry.open(db) as reg:
        assert schema_version(reg._conn) == SCHEMA_VERSION == 4
        assert [(a.name, a.works, a.consent) for a in reg.list_artists()] == [("Old", 1, "note")]
        [m] = reg.match(emb, k=1)
        assert m.artist == "Old" and m.similarity == pytest.approx(1.0)
        assert reg.works("Old")[0]["source"] == ""
        reg.add_artist("New")  # the identity column goes on after the rows migration 1 held
        reg._conn.execute("INSERT INTO schema_version VALUES (99, 'future', '2030-01-01')")
    with pytest.raises(RegistryError, match="newer than this version"):
        Registry.open(db)
    foreign = pg_server.create_database()
    with _connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with pytest.raises(RegistryError, match="not a mimicry registry"):
        Registry.open(foreign)


def test_names_stored_before_the_rules_get_their_keys(db):
    """Migration 3 on PostgreSQL: every artist gets its name key; of two whose keys clash the older
    keeps it, the younger is found by its exact name."""
    with _connect(db) as conn:
        assert migrate_to(conn, 2) == 2
        for name in ("jane doe", "Jane Doe", "Bob\u200b"):
            conn.execute("INSERT INTO artists (name, consent, created_at) VALUES (%s, '', '2025-01-01')", (name,))
    with Registry.open(db) as reg:
        keys = dict(reg._conn.execute("SELECT name, name_key FROM artists").fetchall())
        assert keys == {"jane doe": "jane doe", "Jane Doe": None, "Bob\u200b": "bob"}
        assert reg.get_artist("Jane Doe").name == "Jane Doe" and reg.get_artist("JANE  DOE").name == "jane doe"
        with pytest.raises(RegistryError, match="already"):
            reg.add_artist("bob")


def test_replicas_starting_together_migrate_once(db):
    """Several processes opening an empty database at once: the migrations run under the advisory
    lock, so one applies them and the others find them done (no 'already exists' error)."""
    n = 4
    barrier, errors, opened = threading.Barrier(n), [], []

    def start():
        try:
            barrier.wait(timeout=30)
            opened.append(Registry.open(db))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for reg in opened:
        reg.close()
    assert errors == [] and len(opened) == n
    with _connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(1,), (2,), (3,), (4,)]


def test_write_transactions_of_replicas_run_one_at_a_time(db, encoder, portfolios):
    """Two replicas enrol the same new artist with overlapping files at once. The second waits on
    the advisory lock while the first is inside its transaction, then finds the artist and the
    shared works there: one artist, every work once, the overlap reported as duplicates."""
    ink = sorted(portfolios["ink"].iterdir())
    first, second = Registry.open(db), Registry.open(db)
    inside, release = threading.Event(), threading.Event()
    reports, errors = {}, []

    def stall(stage, done, total):
        if stage == "write" and done == 1:
            inside.set()
            release.wait(timeout=30)

    def enrol(name, reg, files, progress=None):
        try:
            reports[name] = reg.enrol("Ink", files, encoder, progress=progress)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    t1 = threading.Thread(target=enrol, args=("first", first, ink[:6], stall))
    t1.start()
    try:
        assert inside.wait(timeout=60), "the first enrolment never reached its write stage"
        stages = []
        embedded = threading.Event()

        def watch(stage, done, total):
            stages.append(stage)
            if stage == "embed" and done == total:
                embedded.set()

        t2 = threading.Thread(target=enrol, args=("second", second, ink[3:], watch))
        t2.start()
        # The second replica has embedded its works and waits for the advisory lock (tried without blocking,
        # so that the registry's own lock is free for reads meanwhile): it does not write.
        assert embedded.wait(timeout=60), "the second enrolment never finished embedding"
        time.sleep(0.5)
        assert t2.is_alive() and "write" not in stages, "the second enrolment did not wait"
    finally:
        release.set()
        t1.join()
    t2.join()
    first.close()
    second.close()
    assert errors == []
    assert reports["first"].created and reports["first"].added == 6
    assert not reports["second"].created and reports["second"].added == 2
    assert [code for _, code, _ in reports["second"].skipped] == ["duplicate"] * 3
    with Registry.open(db) as reg:
        assert [(a.name, a.works) for a in reg.list_artists()] == [("Ink", 8)]


def test_concurrent_enrolments_of_different_artists(db, encoder, portfolios):
    regs = [Registry.open(db) for _ in range(3)]
    styles = ["ink", "flat", "pastel"]
    barrier, errors = threading.Barrier(len(regs)), []

    def enrol(reg, style):
        try:
            barrier.wait(timeout=30)
            reg.enrol(style.title(), sorted(portfolios[style].iterdir()), encoder)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=enrol, args=(r, s)) for r, s in zip(regs, styles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    query = encoder.embed_one(sorted(portfolios["pastel"].iterdir())[0])
    for reg in regs:  # every replica's index has everyone's works
        assert {a.name: a.works for a in reg.list_artists()} == {"Ink": 8, "Flat": 8, "Pastel": 8}
        assert reg.match(query, k=1)[0].artist == "Pastel"
        reg.close()


def test_sigkill_mid_enrolment_leaves_artist_absent_then_enrols_fully(db, encoder, portfolios):
    with Registry.open(db) as reg:
        reg.enrol("Kept", sorted(portfolios["ink"].iterdir()), encoder)
    files = sorted(portfolios["pastel"].iterdir()) + sorted(portfolios["hatch"].iterdir())

    proc = _child(db, files, "stall")
    try:
        line = proc.stdout.readline().strip()
        assert line == "MID", f"child did not reach the middle of the write: {line!r}"
        os.kill(proc.pid, signal.SIGKILL)  # rows inserted and the advisory lock held, nothing committed
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()

    with Registry.open(db) as reg:
        assert [(a.name, a.works) for a in reg.list_artists()] == [("Kept", 8)]
        assert reg.work_count() == 8  # no orphan rows of the killed enrolment

    proc = _child(db, files, "finish")  # the server rolled back and let go of the lock
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.split() == ["DONE", str(len(files))]
    with Registry.open(db) as reg:
        assert {a.name: a.works for a in reg.list_artists()} == {"Kept": 8, "Victim": len(files)}
        assert reg.get_artist("Victim").consent == "crash test"


def test_url_from_environment_and_clear_errors(monkeypatch, db, pg_server):
    monkeypatch.setenv("MIMICRY_REGISTRY", db)
    with Registry.open() as reg:
        assert reg._dialect.name == "postgresql" and reg.list_artists() == []
    from pathlib import Path

    with pytest.raises(RegistryError, match="give the URL as a string"):
        Registry.open(Path(db))  # what a path-typed option makes of a URL
    with pytest.raises(RegistryError, match=r"cannot connect to the registry database .*:\*\*\*@") as info:
        Registry.open(f"postgresql://someone:s3cret@127.0.0.1:{pg_server.port}/no_such_database", timeout=2)
    assert "s3cret" not in str(info.value)


def test_two_services_share_one_registry(db, tmp_path):
    """Two replicas of the HTTP service on one PostgreSQL registry: a portfolio enrolled through
    one is named in the other's verdicts, and its removal through the other is seen by the first."""
    from fastapi.testclient import TestClient

    from mimicry.service.app import create_app
    from mimicry.service.keys import KeyStore
    from mimicry.service.settings import Settings

    def settings():
        return Settings(model_dir=REPO / "models" / "default", keys_db=tmp_path / "keys.sqlite3", registry=db,
                        intra_op_threads=1, decode_workers=1)

    assert settings().registry == db  # a URL stays a string (a path would lose one '/')
    key, _ = KeyStore(tmp_path / "keys.sqlite3").create("replicas", scope="admin")
    real = sorted((REPO / "examples").glob("real_*.png"))

    def enrol(client, name, paths):
        assert client.post("/v1/artists", json={"name": name}).status_code == 201
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        assert client.post(f"/v1/artists/{name}/works", files=files).json()["added"] == len(paths)

    def closest(client, path) -> list[str]:
        verdict = client.post("/v1/detect", files={"file": (path.name, path.read_bytes())}).json()
        return [m["artist"] for m in verdict["evidence"].get("artists", [])]

    with TestClient(create_app(settings())) as a, TestClient(create_app(settings())) as b:
        a.headers["X-API-Key"] = b.headers["X-API-Key"] = key
        enrol(a, "Ada", real[:3])
        assert b.post("/v1/artists", json={"name": "Ada"}).json()["error"]["code"] == "artist_exists"
        verdict = b.post("/v1/detect", files={"file": (real[0].name, real[0].read_bytes())}).json()
        [top, *_] = verdict["evidence"]["artists"]
        assert top["artist"] == "Ada" and top["nearest_works"][0]["source"] == real[0].name
        assert top["nearest_works"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
        # b has built its index now: a's next enrolment must reach it, and b's removal a's.
        enrol(a, "Bea", real[3:5])
        assert closest(b, real[3])[0] == "Bea" and closest(a, real[3])[0] == "Bea"
        assert b.delete("/v1/artists/Bea").json() == {"artist": "Bea", "removed_works": 2}
        assert closest(a, real[3]) == ["Ada"]


def test_a_dropped_connection_is_replaced(db, encoder, portfolios):
    """The server drops a replica's connection (a restart, a failover, an idle timeout): the next
    read or write goes through on a new connection. One dropped in a write transaction fails that
    write, which the server rolls back, and the next one reconnects."""
    ink = sorted(portfolios["ink"].iterdir())
    query = encoder.embed_one(ink[-1])

    def drop(reg):
        with _connect(db) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (reg._conn.info.backend_pid,))

    with Registry.open(db) as reg:
        reg.enrol("Ink", ink[:4], encoder)
        drop(reg)
        assert reg.match(query, k=1)[0].artist == "Ink"  # the change counter is read on a new connection
        drop(reg)
        assert reg.enrol("Ink", ink[4:6], encoder).added == 2  # the write transaction opens on a new one

        def drop_mid_write(stage, done, total):
            if stage == "write" and done == 1:
                drop(reg)

        with pytest.raises(Exception, match="terminating connection"):
            reg.enrol("Ink", ink[6:], encoder, progress=drop_mid_write)
        assert reg.get_artist("Ink").works == 6  # nothing of the interrupted enrolment
        assert reg.enrol("Ink", ink[6:], encoder).added == 2


def test_cli_takes_a_postgresql_url_for_registry(pg_url, portfolios, monkeypatch):
    from typer.testing import CliRunner

    from mimicry.cli import app
    from registry_fixtures import REPO

    monkeypatch.chdir(REPO)
    run = CliRunner().invoke
    added = run(app, ["artists", "add", "Flat", str(portfolios["flat"]), "--registry", pg_url])
    assert added.exit_code == 0, added.output
    listed = run(app, ["artists", "list", "--registry", pg_url])
    assert listed.exit_code == 0 and "Flat" in listed.output
    assert run(app, ["artists", "remove", "Flat", "--registry", pg_url]).exit_code == 0
