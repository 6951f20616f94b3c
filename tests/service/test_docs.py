"""The API docs work offline (every asset from the server itself) and declare the API key."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from mimicry.service.app import create_app

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def external_urls(html: str) -> list[str]:
    return re.findall(r"""https?://[^\s"'<>)]+""", html)


def test_docs_and_redoc_load_everything_from_the_server(client):
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert external_urls(r.text) == [], page
        assets = ASSET.findall(r.text)
        assert any(a.endswith(".js") for a in assets), page
        for a in assets:
            assert a.startswith("/"), a
            got = client.get(a)
            assert got.status_code == 200 and len(got.content) > 0, a
    assert "validatorUrl" in client.get("/docs").text  # Swagger UI's online validator is off


def test_openapi_declares_the_key_as_header_and_bearer(make_settings):
    with TestClient(create_app(make_settings(require_key_for_detect=True))) as c:
        doc = c.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= next(
        s for s in schemes.values() if s["type"] == "apiKey").items()
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    either = [{name: []} for name in schemes]  # either scheme alone will do
    assert doc["paths"]["/v1/artists"]["get"]["security"] == either
    assert doc["paths"]["/v1/detect"]["post"]["security"] == either


def test_detect_declares_no_key_when_none_is_needed(client):
    doc = client.get("/openapi.json").json()
    assert "security" not in doc["paths"]["/v1/detect"]["post"]
    assert "security" in doc["paths"]["/v1/artists"]["get"]
