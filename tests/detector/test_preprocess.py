"""The one preprocessing source: shapes, values, both resize policies, config round trips."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from mimicry.detector.preprocess import PreprocessConfig, preprocess, preprocess_batch

HALF = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def striped(w=40, h=20) -> Image.Image:
    """Red left quarter, green middle half, blue right quarter."""
    im = Image.new("RGB", (w, h), (0, 255, 0))
    im.paste((255, 0, 0), (0, 0, w // 4, h))
    im.paste((0, 0, 255), (w - w // 4, 0, w, h))
    return im


def test_shape_dtype_and_normalisation():
    cfg = PreprocessConfig(size=16, **HALF)
    x = preprocess(Image.new("RGB", (30, 10), (255, 0, 51)), cfg)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[:, 5, 5], [1.0, -1.0, (51 / 255 - 0.5) / 0.5], atol=1e-6)


def test_per_channel_mean_and_std():
    cfg = PreprocessConfig(size=4, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    x = preprocess(Image.new("RGB", (4, 4), (255, 255, 255)), cfg)
    np.testing.assert_allclose(x[:, 0, 0], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225],
                               rtol=1e-6)


def test_squash_keeps_everything_and_crop_cuts_the_long_sides():
    squash = preprocess(striped(), PreprocessConfig(size=20, resize="squash", **HALF))
    crop = preprocess(striped(), PreprocessConfig(size=20, resize="shorter_then_center_crop", **HALF))
    # Squash: red at the left edge, blue at the right. Crop keeps the centred 20x20: all green.
    assert squash[0, 10, 0] == 1.0 and squash[2, 10, -1] == 1.0
    np.testing.assert_allclose(crop[1], 1.0)
    np.testing.assert_allclose(crop[[0, 2]], -1.0)
    tall = preprocess(striped().transpose(Image.Transpose.ROTATE_90), PreprocessConfig(
        size=20, resize="shorter_then_center_crop", **HALF))
    np.testing.assert_allclose(tall[1], 1.0)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])
def test_deterministic_for_every_interpolation(interpolation):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    cfg = PreprocessConfig(size=24, interpolation=interpolation, **HALF)
    a, b = preprocess(im, cfg), preprocess(im.copy(), cfg)
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_an_image_already_at_size_is_not_resampled():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = preprocess(Image.fromarray(arr), PreprocessConfig(size=8, **HALF))
    np.testing.assert_allclose(x, (arr.transpose(2, 0, 1) / 255 - 0.5) / 0.5, atol=1e-6)


@pytest.mark.parametrize("mean, std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                       ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_normalisation_is_bit_for_bit_the_float32_formula(mean, std):
    """The per-level table must give exactly what float32 ``(x/255 - mean)/std`` gives, every level and channel,
    so that models calibrated before the table score the same: equality, not closeness."""
    levels = np.arange(256, dtype=np.uint8)
    arr = np.stack(np.meshgrid(levels, levels[::-1], indexing="ij"), axis=-1)[..., [0, 1, 0]]
    arr[..., 2] = np.roll(levels, 77)[None, :]  # each channel sees all 256 levels, in different places
    x = preprocess(Image.fromarray(arr), PreprocessConfig(size=256, mean=mean, std=std))
    f = np.asarray(arr, dtype=np.float32) / np.float32(255.0)
    want = ((f - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)
    assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (3, 256, 256)
    assert np.array_equal(x, want)
    for c in range(3):
        assert set(np.unique(arr[..., c])) == set(range(256))
    x[0, 0, 0] = 9.0  # the caller owns its array: the shared table is untouched
    assert preprocess(Image.fromarray(arr), PreprocessConfig(size=256, mean=mean, std=std))[0, 0, 0] == want[0, 0, 0]


def test_batch():
    cfg = PreprocessConfig(size=8, **HALF)
    batch = preprocess_batch([Image.new("RGB", (9, 9)), Image.new("RGB", (20, 5), "white")], cfg)
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == np.float32
    assert preprocess_batch([], cfg).shape == (0, 3, 8, 8)


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(Image.new("RGBA", (4, 4)), PreprocessConfig(size=4, **HALF))


def test_config_round_trips_through_json():
    cfg = PreprocessConfig(size=64, resize="shorter_then_center_crop", interpolation="lanczos",
                           mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d == {"size": 64, "resize": "shorter_then_center_crop", "interpolation": "lanczos",
                 "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    assert PreprocessConfig.from_dict(d) == cfg and hash(PreprocessConfig.from_dict(d)) == hash(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.size = 3


@pytest.mark.parametrize("bad,match", [
    (dict(size=0), "size"),
    (dict(size=8, resize="pad"), "resize"),
    (dict(size=8, interpolation="nearest"), "interpolation"),
    (dict(size=8, mean=(0.5, 0.5)), "mean"),
    (dict(size=8, std=(0.5, 0.0, 0.5)), "std"),
    (dict(size=8, detail=0), "detail"),
    (dict(size=8, detail=True), "detail"),
])
def test_invalid_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        PreprocessConfig(**{**HALF, **bad})


def test_from_dict_refuses_unknown_and_missing_settings():
    with pytest.raises(ValueError, match="unknown preprocessing setting.*crop_pct"):
        PreprocessConfig.from_dict({"size": 8, "crop_pct": 0.9, **HALF})
    with pytest.raises(ValueError, match="missing"):
        PreprocessConfig.from_dict({"size": 8})


def checker(side: int) -> Image.Image:
    """Black and white squares of one pixel: all detail, no content at any coarser scale."""
    a = (np.indices((side, side)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([a] * 3, axis=-1))


def test_detail_area_averages_to_its_grid_before_the_resize():
    # A one-pixel checkerboard has nothing at a 16-px grid: at the input size (64) it keeps its full
    # contrast without `detail`, and becomes flat grey with it.
    assert float(np.ptp(preprocess(checker(64), PreprocessConfig(size=64, **HALF)))) == pytest.approx(2.0)
    assert float(np.ptp(preprocess(checker(64), PreprocessConfig(size=64, detail=16, **HALF)))) < 0.02
    cfg = PreprocessConfig(size=32, detail=16, **HALF)
    # The same as doing it by hand: box to 16 x 16, then the interpolation to 32.
    im = striped(96, 64)
    by_hand = im.resize((16, 16), Image.Resampling.BOX).resize((32, 32), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(preprocess(im, cfg), preprocess(by_hand, PreprocessConfig(size=32, **HALF)))
    # A crop policy averages the centred square, not the whole frame.
    crop = PreprocessConfig(size=32, resize="shorter_then_center_crop", detail=16, **HALF)
    centre = im.crop((16, 0, 80, 64)).resize((16, 16), Image.Resampling.BOX).resize((32, 32), Image.Resampling.BICUBIC)
    np.testing.assert_allclose(preprocess(im, crop), preprocess(centre, PreprocessConfig(size=32, **HALF)), atol=1e-6)


def test_detail_leaves_an_image_no_larger_than_its_grid_alone():
    im = striped(16, 12)  # one side under the grid: nothing to average away
    cfg = PreprocessConfig(size=32, detail=16, **HALF)
    np.testing.assert_array_equal(preprocess(im, cfg), preprocess(im, PreprocessConfig(size=32, **HALF)))


def test_detail_round_trips_and_cards_without_it_read_as_before():
    cfg = PreprocessConfig(size=64, detail=48, **HALF)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["detail"] == 48 and PreprocessConfig.from_dict(d) == cfg
    assert "detail" not in PreprocessConfig(size=64, **HALF).to_dict()
    assert PreprocessConfig.from_dict({"size": 64, **HALF}).detail is None
