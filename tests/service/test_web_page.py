"""The artists' web page in real headless Chromium (Debian's, installed by `make test`),
driven by Playwright, against a live server."""

from __future__ import annotations

import io
import shutil

import pytest
from service_fixtures import EXAMPLES, MODEL

from mimicry.detector import Detector

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: `make sysdeps` (part of `make test`) installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_drop_an_image_and_see_the_verdict(browser, live_server):
    det = Detector.from_dir(MODEL, intra_op_threads=1)
    mimicry = next(p for p in EXAMPLES if p.name.startswith("mimicry"))
    real = next(p for p in EXAMPLES if p.name.startswith("real"))
    with live_server() as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        assert "AI imitation" in page.title()
        page.wait_for_function("document.getElementById('model-footer').textContent.includes('Model:')")
        assert det.name in page.text_content("#model-footer")

        for path in (mimicry, real):
            expected = det.predict([str(path)])[0]
            page.set_input_files("#file", str(path))
            page.wait_for_selector(f"#verdict[data-label='{expected.label}']", timeout=20_000)
            assert page.is_visible("#result")
            assert f"{100 * expected.score:.1f}%" in page.text_content("#score")
            assert expected.label in page.text_content("#band")
            assert det.name in page.text_content("#model")
            assert det.bundle.card["training_data"]["trained_on"][:60] in page.text_content("#trained-on")
            assert '"logit"' in page.text_content("#evidence")

        # The heatmap of the last image, on request.
        page.click("#explain-btn")
        page.wait_for_selector("#heatmap-box:not([hidden])", timeout=30_000)
        assert page.get_attribute("#heatmap", "src").startswith("data:image/png;base64,")
        assert page.evaluate("document.getElementById('heatmap').decode().then(() => "
                             "document.getElementById('heatmap').naturalWidth)") > 0
        assert "strongest" in page.text_content("#heatmap-legend")  # the legend beside the picture, not in it

        # Drag and drop: a real DataTransfer carrying the file, dropped on the zone.
        data = list(mimicry.read_bytes())
        handle = page.evaluate_handle("""(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'}));
            return dt; }""", data)
        page.evaluate("document.getElementById('result').hidden = true")
        page.dispatch_event("#drop", "drop", {"dataTransfer": handle})
        page.wait_for_selector("#result:not([hidden])", timeout=20_000)
        assert page.text_content("#drop-text") == "dropped.png"
        assert page.get_attribute("#verdict", "data-label") == det.predict([str(mimicry)])[0].label

        # A real work whose PNG text chunk says a generator made it: flagged, and the page says why.
        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", "portrait, sks style\nSteps: 30, Sampler: DPM++ 2M, Seed: 7, Model: sd15")
        buf = io.BytesIO()
        Image.open(real).save(buf, "PNG", pnginfo=info)
        page.set_input_files("#file", {"name": "declared.png", "mimeType": "image/png", "buffer": buf.getvalue()})
        page.wait_for_selector("#verdict[data-label='ai-mimicry']", timeout=20_000)
        assert page.is_visible("#provenance-box")
        assert "parameters" in page.text_content("#provenance") or "a1111" in page.text_content("#provenance")
        assert "declares itself AI-made" in page.text_content("#label-reason")

        # A file that is not an image: the page says why, with the API's error code.
        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
        page.wait_for_function("document.getElementById('status').textContent.includes('unsupported_format')")
        assert "error" in page.get_attribute("#status", "class")
        page.close()


def test_a_late_reply_never_shows_under_a_later_file_and_a_plain_text_error_is_read(browser, live_server):
    det = Detector.from_dir(MODEL, intra_op_threads=1)
    first = next(p for p in EXAMPLES if p.name.startswith("mimicry"))
    second = next(p for p in EXAMPLES if p.name.startswith("real"))
    labels = [det.predict([str(p)])[0].label for p in (first, second)]
    assert labels[0] != labels[1]
    with live_server() as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        # The first check's reply is held back 1.5 s, so it arrives after the second file's.
        page.evaluate("""() => { const real = window.fetch; let n = 0;
            window.fetch = (url, opts) => { const reply = real(url, opts);
              if (url === '/v1/detect' && n++ === 0) return reply.then(r => new Promise(ok => setTimeout(() => ok(r), 1500)));
              return reply; }; }""")
        page.set_input_files("#file", str(first))
        page.set_input_files("#file", str(second))
        page.wait_for_selector(f"#verdict[data-label='{labels[1]}']", timeout=20_000)
        page.wait_for_timeout(2500)  # the first reply has come by now, and was dropped
        assert page.text_content("#drop-text") == second.name
        assert page.get_attribute("#verdict", "data-label") == labels[1]
        # A reply that is not JSON (the HTTP server's or a proxy's plain-text 503) is reported, not a parse error.
        page.route("**/v1/detect", lambda route: route.fulfill(status=503, body="Service Unavailable",
                                                               content_type="text/plain"))
        page.set_input_files("#file", str(first))
        page.wait_for_function("document.getElementById('status').textContent.includes('overloaded')")
        assert "busy" in page.text_content("#status") and "JSON" not in page.text_content("#status")
        page.close()


def test_page_asks_for_a_key_when_the_server_requires_one(browser, live_server, make_settings):
    from mimicry.service.keys import KeyStore

    settings = make_settings(require_key_for_detect=True)
    key, _ = KeyStore(settings.keys_db).create("artist")
    path = EXAMPLES[0]
    with live_server(require_key_for_detect=True) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.set_input_files("#file", str(path))
        page.wait_for_function("document.getElementById('status').textContent.includes('unauthorized')")
        assert page.evaluate("document.getElementById('key-box').open")
        page.fill("#api-key", key)
        page.set_input_files("#file", [])
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#result:not([hidden])", timeout=20_000)
        page.close()


def test_page_names_the_closest_enrolled_artists(browser, live_server, make_settings, tmp_path):
    from mimicry.detector.registry import Registry
    from mimicry.detector.style import StyleEncoder

    registry = tmp_path / "registry.sqlite3"
    real = [p for p in EXAMPLES if p.name.startswith("real")]
    encoder = StyleEncoder.from_dir(make_settings().style_encoder_dir)
    with Registry.open(registry, aggregate=encoder.aggregate) as reg:
        reg.enrol("Grace Hopper", [str(p) for p in real[:3]], encoder, consent="test")
    with live_server(registry=registry, show_artists_to_anonymous=True) as srv:  # the page sends no key
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.set_input_files("#file", str(real[0]))  # an enrolled work: its own artist comes first, a match
        page.wait_for_selector("#artists-box:not([hidden])", timeout=20_000)
        first = page.locator("#artists li").first
        assert first.get_attribute("data-artist") == "Grace Hopper"
        assert "(match)" in first.text_content()
        # The enrolled file itself is a copy of an enrolled work, said apart from the style scores.
        page.wait_for_selector("#copy-of:not([hidden])", timeout=20_000)
        copy = page.locator("#copy-of")
        assert copy.get_attribute("data-artist") == "Grace Hopper" and "copy of" in copy.text_content()
        page.set_input_files("#file", [])
        page.set_input_files("#file", str(real[4]))  # not enrolled: no copy line, whatever its style
        page.wait_for_function("document.getElementById('copy-of').hidden")
        page.close()
