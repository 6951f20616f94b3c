"""``mimicry calibrate``: a threshold set on a user's own human works, by kind, written as a new model directory
with the same graph. The tiny model's score of a solid grey image is known in advance (logit 6 * (2 g - 1) for
grey level g in [0, 1]), so every threshold below is computed independently of the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detector_fixtures import encode, solid
from mimicry import exits
from mimicry.cli import app
from mimicry.detector.bundle import ModelBundle, file_sha256
from mimicry.detector.calibration import choose_threshold, keep_tpr_threshold, threshold_at_fpr
from mimicry.detector.detector import Detector


def score(level: int) -> float:
    return float(1 / (1 + np.exp(-6 * (2 * level / 255 - 1))))


def greys(folder: Path, levels) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for v in levels:
        p = folder / f"g{v:03d}.png"
        p.write_bytes(encode(solid((v, v, v), (40, 40)), "PNG"))
        out.append(p)
    return out


def calibrate(*args: str):
    return CliRunner().invoke(app, ["calibrate", *args])


def test_each_kind_is_held_to_the_bound_and_the_graph_is_the_same(model_dir, tmp_path):
    light = greys(tmp_path / "works" / "light", range(150, 250))  # 100 works: 1% lets the brightest one through
    greys(tmp_path / "works" / "dark", range(0, 20))                # 20 works: none may be flagged
    out = tmp_path / "mine"
    result = calibrate(str(tmp_path / "works"), "-o", str(out), "--model", str(model_dir))
    assert result.exit_code == exits.EXIT_OK, result.output

    expected = float(np.nextafter(score(248), np.inf))  # above the second-brightest light work
    assert expected > 0.9  # the tiny model's own threshold: these works raise it
    bundle = ModelBundle.from_dir(out)
    t = bundle.card["thresholds"]
    assert t["ai_mimicry"] == pytest.approx(expected, abs=1e-6)
    assert set(t["calibrated_on_own_works"]["kinds"]) == {"light", "dark"}
    assert t["calibrated_on_own_works"]["human_works"] == 120
    assert t["before"]["ai_mimicry"] == 0.9
    assert bundle.version == "0.0.1+calibrated"
    assert file_sha256(out / "model.onnx") == file_sha256(model_dir / "model.onnx")

    flagged = [v.source for v in Detector.from_dir(out).predict([str(p) for p in light]) if v.label == "ai-mimicry"]
    assert flagged == [str(light[-1])]


def test_the_model_threshold_is_kept_unless_lower_is_allowed(model_dir, tmp_path):
    greys(tmp_path / "works" / "dark", range(0, 100))
    kept = calibrate(str(tmp_path / "works"), "-o", str(tmp_path / "kept"), "--model", str(model_dir))
    assert kept.exit_code == exits.EXIT_OK, kept.output
    card = ModelBundle.from_dir(tmp_path / "kept").card["thresholds"]
    assert card["ai_mimicry"] == 0.9
    assert card["calibrated_on_own_works"]["kept_model_threshold"] is True
    assert card["calibrated_on_own_works"]["threshold_of_these_works"] == pytest.approx(
        float(np.nextafter(score(98), np.inf)), abs=1e-6)

    lower = calibrate(str(tmp_path / "works"), "-o", str(tmp_path / "lower"), "--model", str(model_dir),
                      "--allow-lower")
    assert lower.exit_code == exits.EXIT_OK, lower.output
    t = ModelBundle.from_dir(tmp_path / "lower").thresholds
    assert t.ai_mimicry == pytest.approx(float(np.nextafter(score(98), np.inf)), abs=1e-6)
    assert t.human_below <= t.ai_mimicry  # the band stays ordered when the threshold falls below human_below


def test_ai_images_are_measured_not_used_to_place_it(model_dir, tmp_path):
    greys(tmp_path / "works" / "mid", range(100, 200))
    greys(tmp_path / "ai", range(230, 256))
    report = tmp_path / "report.json"
    result = calibrate(str(tmp_path / "works"), "--ai", str(tmp_path / "ai"), "-o", str(tmp_path / "m"),
                       "--model", str(model_dir), "--allow-lower", "--report", str(report))
    assert result.exit_code == exits.EXIT_OK, result.output
    r = json.loads(report.read_text())
    assert r["threshold"] == pytest.approx(float(np.nextafter(score(198), np.inf)), abs=1e-6)
    assert r["ai_images"] == 26
    assert r["ai_flagged"]["after"] == 1.0
    assert r["ai_flagged"]["before"] == pytest.approx(np.mean([score(v) >= 0.9 for v in range(230, 256)]))


def test_unreadable_files_are_left_out_and_counted(model_dir, tmp_path):
    greys(tmp_path / "works" / "k", range(0, 10))
    (tmp_path / "works" / "k" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = calibrate(str(tmp_path / "works"), "-o", str(tmp_path / "m"), "--model", str(model_dir))
    assert result.exit_code == exits.EXIT_OK, result.output
    own = ModelBundle.from_dir(tmp_path / "m").card["thresholds"]["calibrated_on_own_works"]
    assert own["human_works"] == 10 and own["files_unreadable"] == 1
    assert "broken.png" in result.output


def test_the_bound_holds_under_a_reencoding_too(model_dir, tmp_path):
    greys(tmp_path / "works" / "k", range(100, 200))
    result = calibrate(str(tmp_path / "works"), "-o", str(tmp_path / "m"), "--model", str(model_dir),
                       "--allow-lower", "--under", "resize0.5", "--under", "jpeg75")
    assert result.exit_code == exits.EXIT_OK, result.output
    t = ModelBundle.from_dir(tmp_path / "m").card["thresholds"]
    assert t["fpr_bound_holds_on"] == ["clean", "under resize0.5", "under jpeg75"]
    # 100 works x 3 conditions: 3 copies may be flagged, so the threshold sits at or below the clean-only one.
    assert t["ai_mimicry"] <= float(np.nextafter(score(198), np.inf)) + 1e-6


@pytest.mark.parametrize("args, message", [
    (["--under", "sepia"], "unknown re-encoding sepia"),
    (["--max-fpr", "0.7"], "--max-fpr"),
])
def test_bad_options_write_nothing(model_dir, tmp_path, args, message):
    greys(tmp_path / "works" / "k", range(0, 5))
    result = calibrate(str(tmp_path / "works"), "-o", str(tmp_path / "m"), "--model", str(model_dir), *args)
    assert result.exit_code == exits.EXIT_USAGE
    assert message in result.output
    assert not (tmp_path / "m").exists()


def test_it_refuses_to_overwrite_a_model_or_to_calibrate_on_nothing(model_dir, tmp_path):
    greys(tmp_path / "works" / "k", range(0, 5))
    own = calibrate(str(tmp_path / "works"), "-o", str(model_dir), "--model", str(model_dir))
    assert own.exit_code == exits.EXIT_USAGE and "own directory" in own.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    full = calibrate(str(tmp_path / "works"), "-o", str(tmp_path / "full"), "--model", str(model_dir))
    assert full.exit_code == exits.EXIT_USAGE and "not empty" in full.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not an image")
    bad = calibrate(str(tmp_path / "bad"), "-o", str(tmp_path / "m"), "--model", str(model_dir))
    assert bad.exit_code == exits.EXIT_USAGE and "could be read" in bad.output
    assert not (tmp_path / "m").exists()


def test_choose_threshold_pools_small_kinds_and_takes_the_highest_group():
    rng = np.random.default_rng(0)
    books, stamps, walls = rng.uniform(0, 0.5, 200), rng.uniform(0, 0.9, 10), rng.uniform(0, 0.99, 12)
    scores = np.concatenate([books, stamps, walls])
    sources = np.array(["books"] * 200 + ["stamps"] * 10 + ["walls"] * 12)
    alone = choose_threshold([scores], [], sources, min_works=0)
    assert alone["threshold"] == pytest.approx(np.nextafter(walls.max(), np.inf))
    pooled_small = choose_threshold([scores], [], sources, min_works=100)
    small = np.concatenate([stamps, walls])
    assert pooled_small["threshold"] == threshold_at_fpr(small, 0.01) == pytest.approx(np.nextafter(walls.max(), 1))
    assert choose_threshold([scores], [], sources, rule="pooled")["threshold"] == threshold_at_fpr(scores, 0.01)
    # Mimicry above the bound moves a gap-top threshold up to its lowest score there, never below the bound.
    placed = choose_threshold([scores], [np.array([0.2, 0.995, 0.999])], sources, min_works=0)
    assert placed["threshold"] == 0.995


def test_keep_tpr_raises_the_threshold_to_the_share_of_mimicry_kept_and_never_lowers_it():
    mimicry = np.linspace(0.5, 0.99, 100)
    t = keep_tpr_threshold(mimicry, 0.9)
    assert (mimicry >= t).mean() >= 0.9 and (mimicry >= np.nextafter(t, 1)).mean() < 0.9
    assert keep_tpr_threshold(mimicry, 1.0) == mimicry.min()
    assert keep_tpr_threshold(np.array([0.3, 0.8, 0.9]), 0.5) == 0.8  # 2 of 3 kept: a share can only round up
    with pytest.raises(ValueError, match="keep"):
        keep_tpr_threshold(mimicry, 0.0)
    with pytest.raises(ValueError, match="no mimicry"):
        keep_tpr_threshold(np.zeros(0), 0.9)
    human = np.linspace(0.0, 0.4, 300)  # the gap-top threshold lands on the lowest mimicry score, 0.5
    sources = np.array(["books"] * 300)
    plain = choose_threshold([human], [mimicry], sources, rule="pooled")
    raised = choose_threshold([human], [mimicry], sources, rule="pooled", keep_tpr=0.9)
    assert plain["keep_tpr"] is None and raised["keep_tpr"] == t
    assert raised["threshold"] == max(plain["threshold"], t) > plain["threshold"]
    # A bound the kept share cannot reach is held all the same: the threshold is never lowered.
    hot = np.linspace(0.0, 0.999, 300)
    held = choose_threshold([hot], [mimicry], sources, rule="pooled", keep_tpr=0.9)
    assert held["threshold"] == choose_threshold([hot], [mimicry], sources, rule="pooled")["threshold"] > t
    with pytest.raises(ValueError, match="clean mimicry"):
        choose_threshold([human], [], sources, keep_tpr=0.9)
