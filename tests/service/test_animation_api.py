"""The HTTP service scores an animation as the library does: every frame through the batcher, one rule."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from service_fixtures import EXAMPLES, MODEL

from mimicry.detector import Detector


@pytest.fixture(scope="module")
def reference():
    return Detector.from_dir(MODEL, intra_op_threads=1)


def animation(fmt: str) -> bytes:
    """Real works and mimicry from the examples, one a frame, so the frames' scores differ."""
    ims = [Image.open(p).convert("RGB") for p in EXAMPLES[:3] + EXAMPLES[-3:]]
    buf = io.BytesIO()
    extra = {"WEBP": {"lossless": True}}.get(fmt, {})
    ims[0].save(buf, fmt, save_all=True, append_images=ims[1:], duration=100, loop=0, **extra)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_detect_and_batch_score_an_animation_as_the_library_does(client, reference, fmt):
    data = animation(fmt)
    [expected] = reference.predict([data])
    frames = expected.evidence["frames"]
    assert frames["scored"] == [0, 2, 3, 5] and frames["count"] == 6
    assert max(frames["scores"]) - min(frames["scores"]) > 0.01  # the frames really differ
    r = client.post("/v1/detect", files={"file": (f"anim.{fmt.lower()}", data)})
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["score"] == pytest.approx(expected.score, abs=1e-6)
    assert v["evidence"]["logit"] == pytest.approx(expected.evidence["logit"], abs=1e-5)
    assert v["evidence"]["frames"]["scored"] == frames["scored"]
    assert v["evidence"]["frames"]["logits"] == pytest.approx(frames["logits"], abs=1e-5)
    still = io.BytesIO()
    Image.open(EXAMPLES[0]).save(still, "PNG")
    r = client.post("/v1/detect/batch", files=[("files", ("a", data)), ("files", ("still.png", still.getvalue()))])
    assert r.status_code == 200, r.text
    anim, plain = r.json()["results"]
    assert anim["score"] == pytest.approx(expected.score, abs=1e-6)
    assert anim["evidence"]["frames"]["scored"] == frames["scored"]
    assert "frames" not in plain["evidence"]
    assert plain["score"] == pytest.approx(reference.predict([still.getvalue()])[0].score, abs=1e-6)
