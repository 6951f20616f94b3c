"""API key scopes (detect < enrol < admin), old key databases, the keys CLI, and private files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat

import pytest
from fastapi.testclient import TestClient
from service_fixtures import EXAMPLES
from typer.testing import CliRunner

from mimicry.cli import app as cli
from mimicry.service.app import create_app
from mimicry.service.keys import KeyStore

REAL = [p for p in EXAMPLES if p.name.startswith("real")]


def files_of(paths):
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


@pytest.fixture
def keyed(make_settings, tmp_path):
    """A service with a registry, and one key of each scope."""
    settings = make_settings(registry=tmp_path / "registry.sqlite3", require_key_for_detect=True)
    store = KeyStore(settings.keys_db)
    keys = {scope: store.create(f"{scope} key", scope=scope)[0] for scope in ("detect", "enrol", "admin")}
    store.close()
    with TestClient(create_app(settings)) as c:
        yield c, keys


def test_registry_routes_need_their_scope(keyed):
    c, keys = keyed

    def call(scope, method, url, **kw):
        return c.request(method, url, headers={"X-API-Key": keys[scope]}, **kw)

    reads_and_enrolment = [("GET", "/v1/artists", {}), ("POST", "/v1/artists", {"json": {"name": "Ada"}}),
                           ("GET", "/v1/artists/Ada", {}), ("POST", "/v1/artists/Ada/works", {"files": files_of(REAL[:1])}),
                           ("GET", "/v1/artists/Ada/works/1/thumbnail", {})]
    for method, url, kw in reads_and_enrolment + [("DELETE", "/v1/artists/Ada", {})]:
        r = call("detect", method, url, **kw)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (method, url)
        assert "scope" in r.json()["error"]["message"] and keys["detect"] not in r.text
    for method, url, kw in reads_and_enrolment:
        assert call("enrol", method, url, **kw).status_code in (200, 201), (method, url)
    r = call("enrol", "DELETE", "/v1/artists/Ada")
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    assert call("admin", "GET", "/v1/artists").json()["artists"][0]["works"] == 1  # admin may do what enrol may
    assert call("admin", "DELETE", "/v1/artists/Ada").json() == {"artist": "Ada", "removed_works": 1}
    for scope in keys:  # detect routes take a key of any scope
        r = c.post("/v1/detect", files={"file": ("q.png", REAL[0].read_bytes())}, headers={"X-API-Key": keys[scope]})
        assert r.status_code == 200, scope
    assert c.post("/v1/detect", files={"file": ("q.png", REAL[0].read_bytes())}).status_code == 401


def test_store_refuses_an_unknown_scope(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite3")
    with pytest.raises(ValueError, match="scope"):
        store.create("x", scope="root")
    key, info = store.create("platform")
    assert info.scope == "detect" and store.verify(key).scope == "detect"  # the least a key can do


def test_an_old_key_database_keeps_working_as_admin(make_settings, tmp_path):
    """Keys made before scopes existed keep every right they had: they are admin keys."""
    db = tmp_path / "keys.sqlite3"
    old = sqlite3.connect(str(db))
    old.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, "
                "created_at REAL NOT NULL, revoked_at REAL)")
    key = "mk_0123abcd_" + "s" * 43
    old.execute("INSERT INTO api_keys VALUES ('0123abcd', 'old platform', ?, 1.0, NULL)",
                (hashlib.sha256(key.encode()).hexdigest(),))
    old.commit()
    old.close()
    store = KeyStore(db)
    info = store.verify(key)
    assert info is not None and info.name == "old platform" and info.scope == "admin"
    new, _ = store.create("new one", scope="enrol")
    assert [(k.name, k.scope) for k in store.list()] == [("old platform", "admin"), ("new one", "enrol")]
    store.close()
    with TestClient(create_app(make_settings(keys_db=db, registry=tmp_path / "r.sqlite3"))) as c:
        assert c.post("/v1/artists", json={"name": "Bo"}, headers={"X-API-Key": new}).status_code == 201
        assert c.delete("/v1/artists/Bo", headers={"X-API-Key": key}).status_code == 200


def test_keys_cli_takes_a_scope(tmp_path):
    db = tmp_path / "k.sqlite3"
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "enroller", "--scope", "enrol", "--db", str(db)])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[0]
    assert KeyStore(db).verify(key).scope == "enrol"
    plain = runner.invoke(cli, ["keys", "create", "platform", "--db", str(db)])
    assert KeyStore(db).verify(plain.stdout.strip().splitlines()[0]).scope == "detect"
    listed = runner.invoke(cli, ["keys", "list", "--db", str(db)]).stdout
    assert "\tenrol\t" in listed and "\tdetect\t" in listed
    bad = runner.invoke(cli, ["keys", "create", "x", "--scope", "root", "--db", str(db)])
    assert bad.exit_code == 2


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_database_files_and_new_folders_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        db = tmp_path / "home" / "mimicry" / "keys.sqlite3"
        store = KeyStore(db)
        store.create("x")
        made = list(db.parent.iterdir())
        assert {p.name for p in made} >= {"keys.sqlite3", "keys.sqlite3-wal", "keys.sqlite3-shm"}
        for p in made:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        for folder in (db.parent, db.parent.parent):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        store.close()
    finally:
        os.umask(old)
