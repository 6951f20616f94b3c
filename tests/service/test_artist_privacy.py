"""What the detect routes say about the registry, by caller: anonymous callers learn nothing of it
unless the operator says so, and then only artists' names and similarities; only registry keys
(enrol, admin) see enrolled works' ids, file names and hashes. Names over HTTP: normalised, with
'/' addressable, look-alikes refused, one file under one artist."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from service_fixtures import EXAMPLES

from mimicry.service.app import create_app
from mimicry.service.keys import KeyStore

REAL = [p for p in EXAMPLES if p.name.startswith("real")]


def files_of(paths):
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def start(make_settings, tmp_path, **overrides):
    """A service with one artist enrolled (3 works); returns the client and a key of each scope."""
    settings = make_settings(registry=tmp_path / "registry.sqlite3", **overrides)
    store = KeyStore(settings.keys_db)
    keys = {scope: store.create(scope, scope=scope)[0] for scope in ("detect", "enrol", "admin")}
    store.close()
    client = TestClient(create_app(settings))
    client.__enter__()
    admin = {"X-API-Key": keys["admin"]}
    assert client.post("/v1/artists", json={"name": "Secret Artist"}, headers=admin).status_code == 201
    assert client.post("/v1/artists/Secret Artist/works", files=files_of(REAL[:3]), headers=admin).json()["added"] == 3
    return client, keys


def secrets_in(text: str) -> list[str]:
    """Which enrolled works' file names and sha256 appear in a response."""
    found = [p.name for p in REAL[:3] if p.name in text]
    return found + [p.name + " sha256" for p in REAL[:3] if hashlib.sha256(p.read_bytes()).hexdigest() in text]


@pytest.fixture
def default_service(make_settings, tmp_path):
    client, keys = start(make_settings, tmp_path)
    yield client, keys
    client.__exit__(None, None, None)


def test_anonymous_detect_says_nothing_of_the_registry_by_default(default_service):
    c, keys = default_service
    query = {"file": ("query.png", REAL[0].read_bytes())}  # an enrolled work, under another name
    anonymous = c.post("/v1/detect", files=query)
    assert anonymous.status_code == 200
    assert "artists" not in anonymous.json()["evidence"]
    assert "Secret Artist" not in anonymous.text and secrets_in(anonymous.text) == []
    batch = c.post("/v1/detect/batch", files=[("files", ("q.png", REAL[1].read_bytes()))])
    assert "Secret Artist" not in batch.text and secrets_in(batch.text) == []

    # a detect key: whose style, how close; never which files
    platform = c.post("/v1/detect", files=query, headers={"X-API-Key": keys["detect"]}).json()
    [top] = [m for m in platform["evidence"]["artists"] if m["artist"] == "Secret Artist"]
    assert top["passes"] is True and top["nearest_works"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert set(top["nearest_works"][0]) == {"similarity"} and secrets_in(str(platform)) == []
    first = platform["evidence"]["artists"][0]
    assert platform["evidence"]["attributed_to"] == (first["artist"] if first["passes"] else None)

    # a registry key sees the works, as GET /v1/artists/{name} would show them
    for scope in ("enrol", "admin"):
        full = c.post("/v1/detect", files=query, headers={"X-API-Key": keys[scope]}).json()
        nearest = full["evidence"]["artists"][0]["nearest_works"][0]
        assert nearest["source"] == REAL[0].name and nearest["sha256"] == hashlib.sha256(REAL[0].read_bytes()).hexdigest()

    batch = {scope: c.post("/v1/detect/batch", files=files_of(REAL[:2]), headers={"X-API-Key": keys[scope]}).json()
             for scope in ("detect", "enrol")}  # the caller reaches every image of a batch
    assert [v["evidence"]["artists"][0]["artist"] for v in batch["detect"]["results"]] == ["Secret Artist"] * 2
    assert secrets_in(str(batch["detect"])) == [REAL[0].name, REAL[1].name]  # the uploads' own names only
    assert [v["evidence"]["artists"][0]["nearest_works"][0]["source"] for v in batch["enrol"]["results"]] == \
        [REAL[0].name, REAL[1].name]

    bad = c.post("/v1/detect", files=query, headers={"X-API-Key": keys["admin"][:-3] + "xyz"})
    assert bad.status_code == 401  # a key that is sent is checked, even where none is needed


def test_operators_may_show_names_to_anonymous_callers(make_settings, tmp_path):
    c, _ = start(make_settings, tmp_path, show_artists_to_anonymous=True)
    try:
        r = c.post("/v1/detect", files={"file": ("query.png", REAL[0].read_bytes())})
        [top, *_] = r.json()["evidence"]["artists"]
        assert top["artist"] == "Secret Artist" and top["passes"] is True
        assert secrets_in(r.text) == [] and "work_id" not in r.text
    finally:
        c.__exit__(None, None, None)


def test_names_over_http(default_service):
    c, keys = default_service
    c.headers["X-API-Key"] = keys["enrol"]
    # surrounding spaces: saved and answered under the normalised name (was a 500 after saving)
    assert c.post("/v1/artists", json={"name": "Jane"}).status_code == 201
    r = c.post("/v1/artists/%20Jane%20/works", files=files_of(REAL[3:4]))
    assert r.status_code == 200 and r.json()["artist"] == "Jane" and r.json()["works"] == 1
    assert c.get("/v1/artists/JANE").json()["name"] == "Jane"

    # a name with '/' is reached over HTTP, written plainly or percent-encoded
    assert c.post("/v1/artists", json={"name": "Studio/Jo"}).status_code == 201
    r = c.post("/v1/artists/Studio/Jo/works", files=files_of(REAL[4:5]))
    assert r.status_code == 200 and r.json()["artist"] == "Studio/Jo" and r.json()["added"] == 1
    detail = c.get("/v1/artists/Studio%2FJo").json()
    assert detail["name"] == "Studio/Jo" and len(detail["work_list"]) == 1
    thumb = c.get(f"/v1/artists/Studio/Jo/works/{detail['work_list'][0]['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"

    # look-alikes, invisible characters and other forms of a taken name
    for name, code in [("J\u0430ne Doe", "validation_error"), ("Ja\u200bne", "validation_error"),
                       ("jane", "artist_exists"), ("Secret Art\u0456st", "validation_error")]:
        r = c.post("/v1/artists", json={"name": name})
        assert r.json()["error"]["code"] == code, name
    assert c.post("/v1/artists", json={"name": "Studio/../x"}).status_code == 422

    # the same file under a second artist: skipped, without naming the first
    r = c.post("/v1/artists/Jane/works", files=files_of(REAL[:1])).json()
    assert r["added"] == 0 and r["skipped"][0]["code"] == "enrolled_elsewhere"
    assert "Secret" not in str(r)

    c.headers["X-API-Key"] = keys["admin"]
    assert c.delete("/v1/artists/Studio/Jo").json() == {"artist": "Studio/Jo", "removed_works": 1}
    assert c.delete("/v1/artists/%20jane").json() == {"artist": "Jane", "removed_works": 1}
