"""The evidence heatmap: it must point at the region that carries the evidence, on the tiny model
(whose logit is known: bright means AI) and on the bundled detector with pasted-together real works
and mimicry it never trained on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mimicry.detector.decode import DecodeError
from mimicry.detector.explain import explain, legend, render_overlay

from detector_fixtures import encode, make_model_dir, solid, tiny_card

ROOT = Path(__file__).resolve().parents[2]


def black_with_white_box(size=(96, 64), box=(56, 8, 88, 40)) -> Image.Image:
    im = solid("black", size)
    im.paste((255, 255, 255), box)
    return im


def region_mean(heat: np.ndarray, box, image_size) -> tuple[float, float]:
    """Mean heat inside ``box`` (image pixels) and outside it, on the heat's own grid."""
    h, w = heat.shape
    sx, sy = w / image_size[0], h / image_size[1]
    mask = np.zeros(heat.shape, bool)
    mask[round(box[1] * sy):round(box[3] * sy), round(box[0] * sx):round(box[2] * sx)] = True
    return float(heat[mask].mean()), float(heat[~mask].mean())


# ----------------------------------------------------------------------------- the mechanism (tiny model)


@pytest.mark.parametrize("method", ["window", "occlusion"])
def test_heat_is_highest_where_the_evidence_is(detector, method):
    image = black_with_white_box()  # not square, box off-centre: catches swapped or flipped axes
    ex = explain(detector, encode(image, "PNG"), method=method, grid=8, window=0.25)
    assert ex.heat.shape == (64, 96) and ex.heat.dtype == np.float32
    inside, outside = region_mean(ex.heat, (56, 8, 88, 40), image.size)
    assert inside > outside + 0.2
    assert np.unravel_index(np.argmax(ex.heat), ex.heat.shape)[1] >= 48  # the peak is on the right half


def test_the_verdict_is_the_one_a_scan_gives(detector, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(black_with_white_box(), "PNG"))
    ex = explain(detector, path)
    assert ex.verdict.to_dict() == detector.predict(path)[0].to_dict()
    assert ex.base_logit == pytest.approx(ex.verdict.evidence["logit"])


def test_overlay_is_a_png_of_the_image_in_the_verdicts_colour(detector):
    # Occlusion: covering the white box lowers the logit (heat > 0), covering black raises it (< 0). The tiny
    # model calls the image human, so the overlay is blue, strongest over the black page (evidence for human).
    ex = explain(detector, encode(black_with_white_box(), "PNG"), method="occlusion", grid=4, window=0.5)
    assert ex.verdict.label == "human"
    with Image.open(io.BytesIO(ex.overlay_png)) as im:
        assert im.format == "PNG" and im.size == (96, 64)  # the image's size: no caption inside the picture
        pixels = np.asarray(im.convert("RGB"), np.int16)
    right, left = pixels[8:40, 60:88].mean(axis=(0, 1)), pixels[8:40, 4:40].mean(axis=(0, 1))
    assert left[2] - left[0] > 40  # blue over the black page
    assert abs(right[2] - right[0]) < left[2] - left[0]  # far less colour over the white box
    assert "blue" in legend(ex) and "human" in legend(ex)
    summary = ex.to_dict()
    assert len(summary["heat_grid"]) == 4 and summary["heat_shape"] == [64, 96]
    json.dumps(summary)


def test_a_flagged_image_is_never_painted_in_the_colour_of_human():
    """The heat of a flagged image may be negative everywhere (its windows, each seeing less than the whole,
    all under the threshold): it is drawn in red, strongest where the heat is highest, never in blue."""
    from mimicry.detector.verdict import Verdict

    heat = np.tile(np.linspace(-0.9, -0.1, 40, dtype=np.float32), (20, 1))
    flagged = Verdict(source="x", score=0.99, label="ai-mimicry", threshold=0.9, model="m", model_version="1",
                      error=None, error_code=None, evidence={})
    with Image.open(io.BytesIO(render_overlay(solid("white", (40, 20)), heat, flagged))) as im:
        px = np.asarray(im.convert("RGB"), np.int16)
    assert (px[..., 2] <= px[..., 0]).all()  # nowhere blue
    assert px[:, -4:, 0].mean() - px[:, -4:, 2].mean() > 100  # red where the heat is highest
    assert abs(px[:, :4, 0].mean() - px[:, :4, 2].mean()) < 10  # hardly any colour where it is lowest
    # Without a verdict, the sign says it: all negative is blue.
    with Image.open(io.BytesIO(render_overlay(solid("white", (40, 20)), heat))) as im:
        px = np.asarray(im.convert("RGB"), np.int16)
    assert px[:, :4, 2].mean() - px[:, :4, 0].mean() > 100


def test_large_images_get_a_heat_no_larger_than_max_side(detector):
    ex = explain(detector, encode(solid("white", (600, 300)), "PNG"), max_side=200, grid=2, window=0.5)
    assert ex.heat.shape == (100, 200)


def test_centre_crop_models_leave_the_margins_at_zero(tmp_path):
    from mimicry.detector.detector import Detector

    card = tiny_card()
    card["input"]["resize"] = "shorter_then_center_crop"
    det = Detector.from_dir(make_model_dir(tmp_path / "crop", card), intra_op_threads=1)
    image = solid("black", (96, 32))
    image.paste((255, 255, 255), (32, 0, 48, 32))  # the left half of the centred square the model sees
    ex = explain(det, encode(image, "PNG"), method="occlusion", grid=4, window=0.5)
    assert np.all(ex.heat[:, :30] == 0) and np.all(ex.heat[:, 66:] == 0)
    assert ex.heat[:, 34:46].mean() > ex.heat[:, 50:62].mean() + 0.5


def test_windows_cover_every_pixel_whatever_the_input_size(tmp_path):
    """grid * window >= 1 must cover the input even where window * size is not a whole number."""
    from mimicry.detector.detector import Detector

    det = Detector.from_dir(make_model_dir(tmp_path / "m37", tiny_card(size=37), size=37), intra_op_threads=1)
    ex = explain(det, encode(black_with_white_box(), "PNG"), method="occlusion", grid=5, window=0.2)
    assert np.isfinite(ex.heat).all()


@pytest.mark.parametrize("kwargs", [dict(grid=0), dict(grid=1), dict(grid=33), dict(window=0), dict(window=1.5),
                                    dict(grid=2, window=0.25), dict(method="gradcam"), dict(batch_size=0)])
def test_bad_settings_are_refused(detector, kwargs):
    with pytest.raises(ValueError):
        explain(detector, encode(solid("white"), "PNG"), **kwargs)


def test_an_unreadable_image_is_a_decode_error(detector):
    with pytest.raises(DecodeError) as info:
        explain(detector, b"not an image")
    assert info.value.code == "unsupported_format"


def test_all_windows_go_through_one_session_run(detector, monkeypatch):
    calls = []
    real = detector.predict_arrays
    monkeypatch.setattr(detector, "predict_arrays", lambda x: calls.append(len(x)) or real(x))
    explain(detector, encode(black_with_white_box(), "PNG"), grid=8, window=0.25)
    assert calls == [65]


def test_render_overlay_refuses_a_heat_of_another_size():
    with pytest.raises(ValueError):
        render_overlay(solid("white", (10, 10)), np.zeros((5, 5), np.float32))


# ----------------------------------------------------------------------------- the bundled detector


@pytest.fixture(scope="module")
def bundled():
    from mimicry.detector.detector import Detector

    return Detector.from_dir(ROOT / "models" / "demo-clipart", intra_op_threads=1)  # the examples are its test artist


def mosaic(odd: Image.Image, others: list[Image.Image], q: int) -> bytes:
    canvas = Image.new("RGB", (256, 256), "white")
    for k in range(4):
        canvas.paste(odd if k == q else others[k], ((k % 2) * 128, (k // 2) * 128))
    return encode(canvas, "PNG")


def quadrant_means(heat: np.ndarray) -> list[float]:
    h, w = heat.shape
    return [float(heat[(k // 2) * h // 2:(k // 2 + 1) * h // 2, (k % 2) * w // 2:(k % 2 + 1) * w // 2].mean())
            for k in range(4)]


def test_bundled_model_heat_points_at_the_pasted_in_work(bundled):
    """Real works and mimicry of an artist the model never saw, pasted into one picture (each in
    every position): the odd one out's quadrant gets the highest (mimicry among real works) or the
    lowest (a real work among mimicry) heat."""
    det = bundled
    real = [Image.open(ROOT / "examples" / f"real_{i:02d}.png").convert("RGB") for i in range(6)]
    fake = [Image.open(ROOT / "examples" / f"mimicry_{i:02d}.png").convert("RGB") for i in range(6)]
    for q in range(4):
        m = quadrant_means(explain(det, mosaic(fake[q], [real[(q + k + 1) % 6] for k in range(4)], q),
                                   grid=3, window=0.5).heat)
        assert int(np.argmax(m)) == q and m[q] > max(np.delete(m, q)) + 0.1, (q, m)
        m = quadrant_means(explain(det, mosaic(real[q], [fake[(q + k + 1) % 6] for k in range(4)], q),
                                   grid=3, window=0.5).heat)
        assert int(np.argmin(m)) == q and m[q] < min(np.delete(m, q)) - 0.1, (q, m)


# ----------------------------------------------------------------------------- the CLI


def test_cli_explain_writes_the_overlay_and_prints_the_verdict(model_dir, tmp_path):
    from mimicry.cli import app

    src = tmp_path / "suspect.png"
    src.write_bytes(encode(black_with_white_box(), "PNG"))
    out = tmp_path / "heat.png"
    result = CliRunner().invoke(app, ["explain", str(src), "-o", str(out), "--model", str(model_dir),
                                      "--grid", "4", "--window", "0.5"])
    assert result.exit_code == 0, result.output  # the tiny model calls it human (mostly black)
    assert "human" in result.output and "suspect.png" in result.output and str(out) in result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (96, 64)

    result = CliRunner().invoke(app, ["explain", str(src), "-o", str(out), "--model", str(model_dir), "--json"])
    body = json.loads(result.output)
    assert body["verdict"]["label"] == "human" and len(body["heat_grid"]) == 8


def test_cli_explain_exit_codes(model_dir, tmp_path):
    from mimicry.cli import app

    white = tmp_path / "white.png"
    white.write_bytes(encode(solid("white", (32, 32)), "PNG"))
    run = lambda *args: CliRunner().invoke(app, ["explain", *args, "--model", str(model_dir)])  # noqa: E731
    assert run(str(white), "-o", str(tmp_path / "h.png")).exit_code == 1  # flagged
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run(str(bad), "-o", str(tmp_path / "h2.png"))
    assert result.exit_code == 3 and "corrupt" in result.output and not (tmp_path / "h2.png").exists()
    assert run(str(white), "-o", str(tmp_path / "h3.png"), "--grid", "1").exit_code == 2
    # every grid the help allows works without a --window (2 and 3 once failed: a quarter window left gaps)
    for grid in ("2", "3"):
        result = run(str(white), "-o", str(tmp_path / f"g{grid}.png"), "--grid", grid, "--json")
        assert result.exit_code == 1, result.output
        assert json.loads(result.stdout)["window"] == {"2": 1.0, "3": 0.6667}[grid]
    assert CliRunner().invoke(app, ["explain", str(white), "-o", str(tmp_path / "h4.png"),
                                    "--model", str(tmp_path / "nomodel")]).exit_code == 2


@pytest.mark.parametrize("name, fmt", [("heat.png", "PNG"), ("heat.jpg", "JPEG"), ("heat.JPEG", "JPEG"),
                                       ("heat.webp", "WEBP")])
def test_cli_explain_writes_the_format_its_suffix_names(model_dir, tmp_path, name, fmt):
    from mimicry.cli import app

    src = tmp_path / "suspect.png"
    src.write_bytes(encode(black_with_white_box(), "PNG"))
    out = tmp_path / name
    result = CliRunner().invoke(app, ["explain", str(src), "-o", str(out), "--model", str(model_dir), "--grid", "4",
                                      "--window", "0.5"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == fmt and im.mode == "RGB" and im.size == (96, 64)  # the image alone: legend printed


@pytest.mark.parametrize("name", ["heat.gif", "heat", "heat.png.txt"])
def test_cli_explain_refuses_a_suffix_that_names_no_format_it_writes(model_dir, tmp_path, name):
    from mimicry.cli import app

    src = tmp_path / "suspect.png"
    src.write_bytes(encode(black_with_white_box(), "PNG"))
    result = CliRunner().invoke(app, ["explain", str(src), "-o", str(tmp_path / name), "--model", str(model_dir)])
    assert result.exit_code == 2 and "cannot tell the image format" in result.output
    assert ".png, .jpg, .jpeg or .webp" in result.output and not (tmp_path / name).exists()
