"""/v1/artists over HTTP (auth, CRUD, enrolment with per-file skips) and attribution in verdicts."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_fixtures import EXAMPLES

from mimicry.service.app import create_app
from mimicry.service.keys import KeyStore


@pytest.fixture
def api(make_settings, tmp_path):
    settings = make_settings(registry=tmp_path / "registry.sqlite3")
    key, _ = KeyStore(settings.keys_db).create("registry admin", scope="admin")
    with TestClient(create_app(settings)) as c:
        c.headers["X-API-Key"] = key
        yield c


def files_of(paths):
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_every_artists_route_needs_a_key(make_settings, tmp_path):
    with TestClient(create_app(make_settings(registry=tmp_path / "r.sqlite3"))) as c:
        for method, url in [("get", "/v1/artists"), ("post", "/v1/artists"), ("get", "/v1/artists/x"),
                            ("post", "/v1/artists/x/works"), ("delete", "/v1/artists/x"),
                            ("get", "/v1/artists/x/works/1/thumbnail")]:
            r = c.request(method.upper(), url, json={"name": "x"} if method == "post" else None)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (method, url)


def test_enrol_list_get_remove(api):
    assert api.get("/v1/artists").json() == {"artists": []}
    r = api.post("/v1/artists", json={"name": "Ada Lovelace", "consent": "asked by email, 2026-11-24"})
    assert r.status_code == 201 and r.json()["works"] == 0
    assert api.post("/v1/artists", json={"name": "Ada Lovelace"}).json()["error"]["code"] == "artist_exists"
    assert api.post("/v1/artists", json={"name": ""}).status_code == 422

    real = [p for p in EXAMPLES if p.name.startswith("real")]
    files = files_of(real[:4]) + [("files", ("notes.png", b"not an image", "image/png"))]
    r = api.post("/v1/artists/Ada Lovelace/works", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] == 4 and body["works"] == 4
    assert body["skipped"] == [{"source": "notes.png", "code": "unsupported_format",
                                "message": body["skipped"][0]["message"]}]
    again = api.post("/v1/artists/Ada Lovelace/works", files=files_of(real[:1])).json()
    assert again["added"] == 0 and again["skipped"][0]["code"] == "duplicate"

    detail = api.get("/v1/artists/Ada Lovelace").json()
    assert detail["consent"] == "asked by email, 2026-11-24" and len(detail["work_list"]) == 4
    assert not any(w["original_kept"] for w in detail["work_list"])
    assert sorted(w["source"] for w in detail["work_list"]) == sorted(p.name for p in real[:4])
    thumb = api.get(f"/v1/artists/Ada Lovelace/works/{detail['work_list'][0]['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 128
    assert [a["name"] for a in api.get("/v1/artists").json()["artists"]] == ["Ada Lovelace"]

    assert api.delete("/v1/artists/Ada Lovelace").json() == {"artist": "Ada Lovelace", "removed_works": 4}
    for r in (api.get("/v1/artists/Ada Lovelace"), api.delete("/v1/artists/Ada Lovelace"),
              api.post("/v1/artists/Ada Lovelace/works", files=files_of(real[:1]))):
        assert r.status_code == 404 and r.json()["error"]["code"] == "artist_not_found"


def test_verdicts_name_the_closest_enrolled_artists(api, make_settings):
    plain = api.post("/v1/detect", files={"file": (EXAMPLES[0].name, EXAMPLES[0].read_bytes())})
    assert "artists" not in plain.json()["evidence"]  # nobody enrolled: nothing to say

    real = [p for p in EXAMPLES if p.name.startswith("real")]
    api.post("/v1/artists", json={"name": "Enrolled"})
    api.post("/v1/artists/Enrolled/works", files=files_of(real[:3]))
    # a work of the enrolled set itself: the top artist, similarity 1 to that very work
    r = api.post("/v1/detect", files={"file": (real[0].name, real[0].read_bytes())})
    artists = r.json()["evidence"]["artists"]
    assert artists[0]["artist"] == "Enrolled"
    assert artists[0]["nearest_works"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert artists[0]["passes"] is True and r.json()["evidence"]["attributed_to"] == "Enrolled"
    batch = api.post("/v1/detect/batch", files=files_of(real[3:5])).json()["results"]
    for v in batch:
        assert v["evidence"]["artists"][0]["artist"] == "Enrolled"
        assert -1.0 <= v["evidence"]["artists"][0]["similarity"] <= 1.0
        # attributed to the artist when it passes the threshold, else to no enrolled artist (None)
        passes = v["evidence"]["artists"][0]["passes"]
        assert v["evidence"]["attributed_to"] == ("Enrolled" if passes else None)
        assert v["evidence"]["copy_of"] is None  # works nobody enrolled


def test_verdicts_say_which_enrolled_work_an_upload_copies(api, make_settings, tmp_path):
    """A re-encoded enrolled work is named as that work, whatever its style score; a caller with a
    detect key learns the artist and the distance only (as it learns no enrolled file's name)."""
    real = [p for p in EXAMPLES if p.name.startswith("real")]
    api.post("/v1/artists", json={"name": "Enrolled"})
    api.post("/v1/artists/Enrolled/works", files=files_of(real[:3]))
    [work] = [w for w in api.get("/v1/artists/Enrolled").json()["work_list"] if w["source"] == real[1].name]
    buf = io.BytesIO()
    Image.open(real[1]).convert("RGB").save(buf, "JPEG", quality=75)
    r = api.post("/v1/detect", files={"file": ("reposted.jpg", buf.getvalue())})
    copy_of = r.json()["evidence"]["copy_of"]
    assert (copy_of["artist"], copy_of["work_id"], copy_of["source"]) == ("Enrolled", work["id"], real[1].name)
    assert copy_of["sha256"] == work["sha256"] and 0 <= copy_of["distance"] <= 0.22

    detect_key, _ = KeyStore(api.app.state.mimicry.settings.keys_db).create("platform", scope="detect")
    r = api.post("/v1/detect", files={"file": ("reposted.jpg", buf.getvalue())}, headers={"X-API-Key": detect_key})
    assert r.json()["evidence"]["copy_of"] == {"artist": "Enrolled", "distance": copy_of["distance"]}


def test_service_runs_without_attribution_when_told(make_settings, tmp_path):
    settings = make_settings(style_encoder_dir=None, registry=tmp_path / "r.sqlite3")
    key, _ = KeyStore(settings.keys_db).create("x", scope="enrol")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/detect", files={"file": (EXAMPLES[0].name, EXAMPLES[0].read_bytes())})
        assert r.status_code == 200 and "artists" not in r.json()["evidence"]
        off = c.get("/v1/artists", headers={"X-API-Key": key})
        assert off.status_code == 503 and off.json()["error"]["code"] == "attribution_off"
