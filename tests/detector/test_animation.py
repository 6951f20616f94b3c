"""Animated GIF, WebP and PNG: several frames scored, one documented rule (the mean of the frames' logits)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from mimicry.detector.decode import (FRAME_PIXEL_BUDGET, MAX_FRAMES_REACHED, DecodeError, _reach, decode_cost,
                                     decode_frames, decode_with_metadata, gif_frame_count, to_rgb)
from mimicry.detector.detector import FRAME_RULE, frame_logit
from mimicry.detector.preprocess import preprocess
from detector_fixtures import encode

# The tiny model's logit follows the mean colour: each frame a different grey gives each a different logit.
GREYS = [20, 230, 60, 200, 110, 250, 0, 180, 90, 140]


def frames(n: int = 10, size=(40, 40)) -> list[Image.Image]:
    return [Image.new("RGB", size, (GREYS[i % len(GREYS)],) * 3) for i in range(n)]


def animation(fmt: str, ims: list[Image.Image], **kw) -> bytes:
    extra = {"WEBP": {"lossless": True}, "GIF": {"loop": 0}}.get(fmt, {})
    return encode(ims[0], fmt, save_all=True, append_images=ims[1:], duration=40, **extra, **kw)


def frame_inputs(data: bytes, indices, cfg) -> np.ndarray:
    """Each frame, read here with Pillow on its own and made ready as any still image is."""
    out = []
    with Image.open(io.BytesIO(data)) as im:
        for i in indices:
            im.seek(i)
            im.load()
            out.append(preprocess(to_rgb(im.copy()), cfg))
    return np.stack(out)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_is_scored_by_the_mean_of_its_frames_logits(detector, fmt):
    data = animation(fmt, frames(10))
    [v] = detector.predict([data])
    f = v.evidence["frames"]
    assert f["rule"] == FRAME_RULE == "mean-logit"
    assert f["count"] == 10 and f["reached"] == 10
    assert f["scored"] == [0, 3, 6, 9]  # spread evenly, the first and last included
    per_frame = detector.predict_arrays(frame_inputs(data, f["scored"], detector.config))
    assert f["logits"] == pytest.approx(per_frame.tolist(), abs=1e-5)
    assert v.evidence["logit"] == pytest.approx(float(np.mean(per_frame)), abs=1e-5)
    assert v.evidence["logit"] == pytest.approx(frame_logit(per_frame))
    calibration = detector.bundle.calibration
    assert v.score == pytest.approx(float(calibration(np.asarray([np.mean(per_frame)], np.float32))[0]), abs=1e-6)
    assert f["scores"] == pytest.approx(calibration(per_frame).tolist(), abs=1e-6)
    # not the first frame's verdict, which is what an animation used to get
    first = detector.predict([encode(frames(1)[0], "PNG")])[0]
    assert abs(v.evidence["logit"] - first.evidence["logit"]) > 1.0


def test_a_still_image_has_no_frames_and_the_score_it_always_had(detector):
    data = encode(frames(1)[0], "PNG")
    [v] = detector.predict([data])
    assert "frames" not in v.evidence
    logit = detector.predict_arrays(preprocess(decode_with_metadata(data).image, detector.config)[None])[0]
    assert v.evidence["logit"] == float(logit)
    assert v.score == float(detector.bundle.calibration(np.asarray([logit], np.float32))[0])


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_a_one_frame_animation_is_a_still(detector, fmt):
    still = frames(1)[0]
    one = animation(fmt, [still])
    [v] = detector.predict([one])
    [plain] = detector.predict([encode(still, "PNG")])
    assert "frames" not in v.evidence
    assert v.score == pytest.approx(plain.score, abs=1e-6)


def test_animations_in_a_batch_keep_every_verdict_in_its_place(detector):
    sources = [encode(frames(1)[0], "PNG"), animation("GIF", frames(7)), encode(frames(2)[1], "PNG"),
               animation("WEBP", frames(5)), b"not an image", animation("PNG", frames(3))]
    alone = [detector.predict([s])[0] for s in sources]
    for together in (detector.predict(sources, batch_size=4), list(detector.stream(sources, batch_size=3, workers=2))):
        for a, b in zip(alone, together):
            assert (a.score is None) == (b.score is None)
            if a.score is not None:
                assert b.score == pytest.approx(a.score, abs=1e-6)
                assert b.evidence.get("frames", {}).get("scored") == a.evidence.get("frames", {}).get("scored")
    assert [v.evidence.get("frames", {}).get("scored") for v in alone] == [None, [0, 2, 4, 6], None, [0, 1, 3, 4],
                                                                          None, [0, 1, 2]]


def test_each_frame_goes_through_the_still_image_path_transparency_onto_white(detector):
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    solid = Image.new("RGBA", (40, 40), (0, 0, 0, 255))
    data = animation("WEBP", [solid, clear, solid])
    decoded = decode_frames(data)
    assert decoded.animation.indices == (0, 1, 2)
    assert [im.mode for im in decoded.images] == ["RGB"] * 3
    assert [im.getpixel((5, 5)) for im in decoded.images] == [(0, 0, 0), (255, 255, 255), (0, 0, 0)]


def test_a_long_animation_only_reaches_frames_inside_the_budget():
    w = h = 100
    data = animation("GIF", frames(60, (w, h)))
    budget = 25 * w * h  # 25 frames' worth of pixels
    d = decode_frames(data, frame_pixel_budget=budget)
    assert d.animation.reached == 25 and d.animation.count is None  # a GIF is not read to its end
    assert d.animation.indices == (0, 8, 16, 24)
    # the frames are the ones it says (each grey its own)
    assert [im.getpixel((1, 1))[0] for im in d.images] == [GREYS[i % len(GREYS)] for i in (0, 8, 16, 24)]
    # a WebP says its length in its header; the budget still stops the walk
    d = decode_frames(animation("WEBP", frames(60, (w, h))), frame_pixel_budget=budget)
    assert (d.animation.count, d.animation.reached, max(d.animation.indices)) == (60, 25, 24)
    # a frame bigger than the budget leaves the first frame only, and says so
    d = decode_frames(data, frame_pixel_budget=w * h - 1)
    assert d.animation.indices == (0,) and len(d.images) == 1


def test_thousands_of_frames_stay_cheap_and_the_cost_is_known_before_decoding(detector):
    ims = [Image.new("L", (48, 48), i % 256) for i in range(5000)]
    data = encode(ims[0], "GIF", save_all=True, append_images=ims[1:], duration=10)
    t0 = time.perf_counter()
    [v] = detector.predict([data])
    assert time.perf_counter() - t0 < 5  # about 60 ms on a shared 2-core machine
    reach = min(MAX_FRAMES_REACHED, FRAME_PIXEL_BUDGET // (48 * 48))
    assert v.evidence["frames"]["reached"] == reach and max(v.evidence["frames"]["scored"]) == reach - 1
    assert decode_cost(data) == reach * 48 * 48
    assert decode_cost(encode(frames(1)[0], "GIF")) == 40 * 40  # a still costs its pixels, as before


@pytest.mark.parametrize("n", [2, 7, 60])
def test_a_gif_is_charged_the_frames_it_has_counted_from_its_blocks(n):
    # Frames with local colour tables and extensions between them, as encoders write them: the walk agrees with
    # Pillow's own count (which decodes every frame to get it), and a short GIF costs its frames, not the reach.
    rng = np.random.default_rng(n)
    ims = [Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)) for _ in range(n)]
    data = animation("GIF", ims, comment=b"made here")
    with Image.open(io.BytesIO(data)) as im:
        assert gif_frame_count(data, 10_000) == im.n_frames == n
    assert gif_frame_count(data, 3) == min(n, 3)  # the walk stops at its limit
    assert decode_cost(data) == min(n, _reach(50 * 30, FRAME_PIXEL_BUDGET)) * 50 * 30
    # cut short: the whole frames before the cut count, not the frames it had (the decoder stops there too)
    assert 1 <= gif_frame_count(data[: len(data) * 2 // 3], 10_000) < n


def test_an_image_over_the_pixel_limit_costs_nothing_it_is_refused_from_its_header():
    from detector_fixtures import png_bomb_header

    bomb = png_bomb_header(8000, 6000)  # 48 MP in a few bytes
    assert decode_cost(bomb) == 0 and decode_cost(bomb, max_pixels=50_000_000) == 48_000_000
    with pytest.raises(DecodeError) as e:
        decode_frames(bomb)
    assert e.value.code == "too_many_pixels"


def test_a_broken_later_frame_ends_the_animation_there(detector):
    data = animation("GIF", frames(10))
    with Image.open(io.BytesIO(data)) as im:
        im.seek(6)
        start = im.tile[0][2]  # where frame 6's image data begins
    # cut the file inside frame 6's data: frames 0-5 still give a verdict, spread over those six
    [v] = detector.predict([data[:start + 3]])
    f = v.evidence["frames"]
    assert v.ok and f["count"] is None and f["reached"] == 6
    assert f["scored"] == [0, 2, 3, 5]


def test_a_pil_image_at_its_first_frame_is_sampled_and_left_where_it_was(detector):
    data = animation("GIF", frames(10))
    im = Image.open(io.BytesIO(data))
    [v] = detector.predict([im])
    assert v.evidence["frames"]["scored"] == [0, 3, 6, 9]
    assert im.tell() == 0
    assert v.score == pytest.approx(detector.predict([data])[0].score, abs=1e-6)
    im.seek(3)  # a caller who picked a frame gets that frame judged
    [one] = detector.predict([im])
    assert "frames" not in one.evidence


def test_attribution_and_the_single_frame_doors_take_the_first_frame(detector):
    data = animation("GIF", frames(10))
    image, _ = detector.decode(data)
    assert image.getpixel((1, 1)) == (GREYS[0],) * 3
    loaded = detector.load(data)
    np.testing.assert_array_equal(loaded.x, loaded.frames[0])
    np.testing.assert_array_equal(detector.load_input(data), loaded.x)
    assert loaded.inputs.shape == (4, 3, detector.config.size, detector.config.size)
