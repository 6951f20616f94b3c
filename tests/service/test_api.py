"""Every endpoint and every error of the HTTP API, through FastAPI's TestClient."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from service_fixtures import MODEL, jpeg_bytes
from fastapi.testclient import TestClient
from PIL import Image

from mimicry.detector import Detector
from mimicry.service.app import create_app
from mimicry.service.keys import KeyStore


@pytest.fixture(scope="module")
def reference():
    return Detector.from_dir(MODEL, intra_op_threads=1)


def png_bytes(size=(64, 64), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width x height`` with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body
    return body


# ----------------------------------------------------------------------------- detect


def test_detect_multipart_and_raw_body_match_the_library(client, example_bytes, reference):
    for name, data in example_bytes:
        expected = reference.predict([data])[0]
        r = client.post("/v1/detect", files={"file": (name, data, "image/png")})
        assert r.status_code == 200, r.text
        v = r.json()
        assert v["source"] == name
        assert v["label"] == expected.label
        assert v["score"] == pytest.approx(expected.score, abs=1e-6)
        assert v["threshold"] == pytest.approx(expected.threshold)
        assert v["model"] == reference.name and v["model_version"] == reference.version
        assert v["evidence"]["model_trained_on"] == reference.bundle.card["training_data"]["trained_on"]
        raw = client.post("/v1/detect", content=data, headers={"Content-Type": "image/png"})
        assert raw.status_code == 200 and raw.json()["score"] == pytest.approx(v["score"], abs=1e-6)


def test_detect_jpeg_octet_stream(client, reference):
    data = jpeg_bytes((640, 480))
    r = client.post("/v1/detect", content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json()["score"] == pytest.approx(reference.predict([data])[0].score, abs=1e-6)


@pytest.mark.parametrize("body, status, code", [
    (b"this is not an image", 415, "unsupported_format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 415, "unsupported_format"),
    (png_bytes()[:60], 422, "corrupt"),
    (b"", 422, "empty"),
])
def test_detect_undecodable_bodies(client, body, status, code):
    assert_error(client.post("/v1/detect", content=body, headers={"Content-Type": "image/png"}), status, code)
    assert_error(client.post("/v1/detect", files={"file": ("x.png", body)}), status, code)


def test_detect_pixel_bomb_is_413_before_decoding(client):
    assert_error(client.post("/v1/detect", content=bomb_png(50_000, 50_000),
                             headers={"Content-Type": "image/png"}), 413, "too_many_pixels")


def test_pixel_limit_is_a_setting(make_settings):
    with TestClient(create_app(make_settings(max_pixels=100 * 100))) as c:
        assert_error(c.post("/v1/detect", content=png_bytes((101, 100)), headers={"Content-Type": "image/png"}),
                     413, "too_many_pixels")
        assert c.post("/v1/detect", content=png_bytes((100, 100)), headers={"Content-Type": "image/png"}).status_code == 200


def test_body_cap_before_parsing(make_settings):
    with TestClient(create_app(make_settings(max_body_bytes=4096))) as c:
        big = jpeg_bytes((300, 300))
        assert len(big) > 4096
        assert_error(c.post("/v1/detect", content=big, headers={"Content-Type": "image/jpeg"}), 413, "too_large")
        assert_error(c.post("/v1/detect", files={"file": ("a.jpg", big)}), 413, "too_large")

        def chunks():  # no Content-Length: the cap applies while the body streams in
            for i in range(0, len(big), 1000):
                yield big[i:i + 1000]
        assert_error(c.post("/v1/detect", content=chunks(), headers={"Content-Type": "image/jpeg"}), 413, "too_large")
        assert c.get("/readyz").status_code == 200


def test_detect_request_shape_errors(client):
    assert_error(client.post("/v1/detect", content=b"{}", headers={"Content-Type": "application/json"}),
                 415, "unsupported_format")
    assert_error(client.post("/v1/detect", content=b"--x\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=x"}), 400, "bad_request")
    assert_error(client.post("/v1/detect", content=b"", headers={"Content-Type": "multipart/form-data"}),
                 400, "bad_request")
    assert_error(client.post("/v1/detect", data={"note": "no file"}), 415, "unsupported_format")  # urlencoded
    form_without_file = client.post("/v1/detect", files={"note": (None, "just text")})
    assert_error(form_without_file, 400, "bad_request")
    two = client.post("/v1/detect", files=[("file", ("a.png", png_bytes())), ("file", ("b.png", png_bytes()))])
    assert_error(two, 413, "too_many_items")
    assert_error(client.post("/v1/detect", content=b"x", headers={"Content-Type": "image/png",
                                                                    "Content-Length": "abc"}), 400, "bad_request")


def test_request_timeout_is_504(make_settings, example_bytes):
    with TestClient(create_app(make_settings(request_timeout_s=1e-6))) as c:
        assert_error(c.post("/v1/detect", content=example_bytes[0][1], headers={"Content-Type": "image/png"}),
                     504, "timeout")


# ----------------------------------------------------------------------------- batch


def test_batch_gives_one_result_per_item_with_item_errors(client, example_bytes, reference):
    files = [("files", (n, d, "image/png")) for n, d in example_bytes[:3]]
    files += [("files", ("junk.png", b"junk")), ("files", ("cut.png", png_bytes()[:50])),
              ("files", ("bomb.png", bomb_png(40_000, 40_000)))]
    r = client.post("/v1/detect/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["source"] for x in results] == [f[1][0] for f in files]
    for (name, data), got in zip(example_bytes[:3], results):
        assert got["label"] == reference.predict([data])[0].label and got["error"] is None
    assert [x["error_code"] for x in results[3:]] == ["unsupported_format", "corrupt", "too_many_pixels"]
    assert all(x["score"] is None and x["label"] is None for x in results[3:])


def test_batch_item_limit(make_settings):
    with TestClient(create_app(make_settings(max_batch_items=2))) as c:
        files = [("files", (f"{i}.png", png_bytes())) for i in range(3)]
        assert_error(c.post("/v1/detect/batch", files=files), 413, "too_many_items")
        assert len(c.post("/v1/detect/batch", files=files[:2]).json()["results"]) == 2


# ----------------------------------------------------------------------------- auth


def test_detect_key_optional_by_default_and_required_when_set(make_settings, example_bytes):
    settings = make_settings(require_key_for_detect=True)
    store = KeyStore(settings.keys_db)
    key, info = store.create("platform A")
    data = example_bytes[0][1]
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/detect", content=data, headers={"Content-Type": "image/png"})
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == "Bearer"
        bad = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
        assert_error(c.post("/v1/detect", content=data, headers={"Content-Type": "image/png", "X-API-Key": bad}),
                     401, "unauthorized")
        ok = c.post("/v1/detect", content=data, headers={"Content-Type": "image/png", "X-API-Key": key})
        assert ok.status_code == 200
        bearer = c.post("/v1/detect/batch", files=[("files", ("a.png", data))],
                        headers={"Authorization": f"Bearer {key}"})
        assert bearer.status_code == 200
        assert store.revoke(info.id)
        assert_error(c.post("/v1/detect", content=data, headers={"Content-Type": "image/png", "X-API-Key": key}),
                     401, "unauthorized")
        assert c.get("/healthz").status_code == 200  # ops endpoints stay open


def test_keys_are_stored_hashed(make_settings):
    settings = make_settings()
    store = KeyStore(settings.keys_db)
    key, _ = store.create("x")
    store.close()
    raw = settings.keys_db.read_bytes()
    wal = settings.keys_db.with_name(settings.keys_db.name + "-wal")
    if wal.exists():
        raw += wal.read_bytes()
    secret = key.split("_", 2)[2]  # mk_<id>_<secret>; the secret itself may hold "_"
    assert secret.encode() not in raw
    assert KeyStore(settings.keys_db).verify(key) is not None


# ----------------------------------------------------------------------------- other endpoints


def test_models_health_ready(client, reference):
    m = client.get("/v1/models").json()["models"][0]
    assert m["name"] == reference.name and m["version"] == reference.version
    assert m["input_size"] == reference.config.size
    assert m["thresholds"]["ai_mimicry"] == pytest.approx(reference.bundle.thresholds.ai_mimicry)
    assert m["onnx_sha256"] == reference.bundle.card["onnx_sha256"]
    assert m["trained_on"] == reference.bundle.card["training_data"]["trained_on"]
    assert client.get("/healthz").json() == {"status": "ok", "model": None, "model_version": None}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == reference.name


def test_ready_only_while_the_model_is_loaded(make_settings):
    app = create_app(make_settings())
    c = TestClient(app)  # not entered: the lifespan has not run, so nothing is loaded
    assert_error(c.get("/readyz"), 503, "not_ready")
    assert_error(c.post("/v1/detect", content=png_bytes(), headers={"Content-Type": "image/png"}), 503, "not_ready")
    assert c.get("/healthz").status_code == 200


def test_metrics_count_routes_statuses_batches_and_model(client, example_bytes):
    client.post("/v1/detect", content=example_bytes[0][1], headers={"Content-Type": "image/png"})
    client.post("/v1/detect", content=b"junk", headers={"Content-Type": "image/png"})
    text = client.get("/metrics").text
    assert 'mimicry_http_requests_total{method="POST",route="/v1/detect",status="200"} 1.0' in text
    assert 'mimicry_http_requests_total{method="POST",route="/v1/detect",status="415"} 1.0' in text
    assert 'mimicry_http_request_duration_seconds_count{route="/v1/detect"} 2.0' in text
    assert "mimicry_batch_size_count 1.0" in text
    assert "mimicry_queue_depth 0.0" in text
    assert 'mimicry_model_info{name="mimicry-demo-clipart"' in text or "mimicry_model_info{" in text
    assert 'mimicry_images_total{outcome="unsupported_format"} 1.0' in text


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/v1/nothing"), 404, "not_found_route")
    assert_error(client.get("/v1/detect"), 405, "method_not_allowed")


def test_openapi_documents_the_versioned_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/detect/batch", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body)
    assert {"413", "415", "422", "503"} <= set(spec["paths"]["/v1/detect"]["post"]["responses"])


def test_web_page_and_assets_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in r.text
    assert "/v1/detect" in client.get("/static/app.js").text


# ----------------------------------------------------------------------------- uploads are not kept


def test_uploads_are_kept_only_when_the_operator_asks(make_settings, tmp_path, example_bytes):
    import hashlib

    name, data = example_bytes[0]
    keep = tmp_path / "kept"
    with TestClient(create_app(make_settings())) as c:
        assert c.post("/v1/detect", content=data, headers={"Content-Type": "image/png"}).status_code == 200
    assert not keep.exists()
    before = {p for p in tmp_path.rglob("*")}
    with TestClient(create_app(make_settings(keep_uploads_dir=keep))) as c:
        assert c.post("/v1/detect", content=data, headers={"Content-Type": "image/png"}).status_code == 200
    assert (keep / hashlib.sha256(data).hexdigest()).read_bytes() == data
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p == keep or p.parent == keep for p in new), new


# ----------------------------------------------------------------------------- provenance evidence


def test_a_file_that_declares_itself_ai_is_flagged_with_its_signal(client, reference, example_bytes):
    from PIL import PngImagePlugin

    human = next(d for n, d in example_bytes if n.startswith("real"))
    assert reference.predict([human])[0].label == "human"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a fox in sks style\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
                                "Model: sd15-dreambooth")
    buf = io.BytesIO()
    Image.open(io.BytesIO(human)).save(buf, "PNG", pnginfo=info)
    r = client.post("/v1/detect", files={"file": ("declared.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["label"] == "ai-mimicry"
    assert v["evidence"]["model_label"] == "human"
    assert v["evidence"]["label_reason"] == "declared-ai-by-metadata"
    assert any(s["declares_ai"] for s in v["evidence"]["provenance"])
    assert v["score"] == pytest.approx(reference.predict([human])[0].score, abs=1e-6)  # the score stays the model's


# ----------------------------------------------------------------------------- explain


def test_explain_gives_the_verdict_and_a_heatmap(client, reference, example_bytes):
    import base64

    name, data = next((n, d) for n, d in example_bytes if n.startswith("mimicry"))
    r = client.post("/v1/explain", files={"file": (name, data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = reference.predict([data])[0]
    assert body["verdict"]["label"] == expected.label
    assert body["verdict"]["score"] == pytest.approx(expected.score, abs=1e-6)
    assert body["method"] == "window" and body["grid"] == 8
    assert len(body["heat_grid"]) == 8 and all(len(row) == 8 for row in body["heat_grid"])
    png = base64.b64decode(body["overlay_png"].split(",", 1)[1])
    overlay = Image.open(io.BytesIO(png))
    assert overlay.format == "PNG" and overlay.width >= body["heat_shape"][1]

    raw = client.post("/v1/explain?format=png&method=occlusion&grid=4", content=data,
                      headers={"Content-Type": "image/png"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    assert raw.headers["X-Mimicry-Label"] == expected.label
    assert Image.open(io.BytesIO(raw.content)).format == "PNG"


def test_explain_errors(client):
    assert_error(client.post("/v1/explain", content=b"junk", headers={"Content-Type": "image/png"}),
                 415, "unsupported_format")
    assert_error(client.post("/v1/explain?grid=99", content=png_bytes(), headers={"Content-Type": "image/png"}),
                 422, "validation_error")
    assert_error(client.post("/v1/explain?method=magic", content=png_bytes(), headers={"Content-Type": "image/png"}),
                 422, "validation_error")


def test_unexpected_errors_are_json_and_a_lost_database_is_503(make_settings):
    import sqlite3

    app = create_app(make_settings())

    @app.get("/test-only/db-gone")
    async def db_gone():
        raise sqlite3.OperationalError("unable to open database file")

    @app.get("/test-only/bug")
    async def bug():
        raise KeyError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = assert_error(c.get("/test-only/db-gone"), 503, "registry_unavailable")
        assert "unable to open database file" in r["error"]["message"]
        assert_error(c.get("/test-only/bug"), 500, "internal")
        assert c.get("/readyz").status_code == 200
