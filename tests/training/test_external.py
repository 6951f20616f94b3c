"""External sources -> dataset: provenance ingestion, contact sheets, one normalisation, splits, baselines."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimicry.training import external
from mimicry.training.baselines import colour_features, file_facts
from mimicry.training.finetune import realworld_augmentations


def _sheet(colours: list[tuple[int, int, int]], cell: int) -> Image.Image:
    sheet = Image.new("RGB", (2 * cell, 2 * cell))
    for k, c in enumerate(colours):
        sheet.paste(Image.new("RGB", (cell, cell), c), ((k % 2) * cell, (k // 2) * cell))
    return sheet


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Two AI sheet sources sharing artists, two human sources in several formats, one provenance file."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    rows = []
    for gen in ("gen-a", "gen-b"):
        (root / gen).mkdir()
        for i in range(8):
            colours = [tuple(int(v) for v in rng.integers(0, 255, 3)) for _ in range(4)]
            _sheet(colours, 80).save(root / gen / f"artist{i}.webp", quality=80)
            rows.append({"file": f"{gen}/artist{i}.webp", "label": "ai", "artist": f"Artist {i}",
                         "generator": gen, "licence": "MIT", "repo": f"example/{gen}", "commit": "c" * 40,
                         "path_in_repo": f"img/artist{i}.webp"})
    (root / "paintings").mkdir()
    for i in range(6):
        arr = rng.integers(0, 255, (80 + 4 * i, 200, 3), dtype=np.uint8)  # about 2:1, various sizes
        Image.fromarray(arr).save(root / "paintings" / f"p{i}.jpg", quality=85)
        rows.append({"file": f"paintings/p{i}.jpg", "label": "human", "artist": f"Painter {i % 3}",
                     "licence": "CC0", "repo": "example/museum", "commit": "d" * 40, "path_in_repo": f"p{i}.jpg"})
    (root / "clipart").mkdir()
    for i in range(6):
        im = Image.new("RGBA", (70, 140), (0, 0, 0, 0))  # portrait, transparent
        im.paste(Image.new("RGBA", (30, 30), (200, 10 * i, 40, 255)), (20, 50))
        im.save(root / "clipart" / f"c{i}.png")
        rows.append({"file": f"clipart/c{i}.png", "label": "human", "group": f"folder{i % 2}",
                     "licence": "public domain", "repo": "debian:clipart", "commit": "1.0",
                     "path_in_repo": f"/usr/share/clipart/c{i}.png"})
    (root / "clipart" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append({"file": "clipart/broken.png", "label": "human", "group": "folder0", "licence": "x"})
    (root / "clipart" / "tiny.png").write_bytes(_png(Image.new("RGB", (20, 20), "red")))
    rows.append({"file": "clipart/tiny.png", "label": "human", "group": "folder1", "licence": "x"})
    (root / "sources.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _build(sources: Path, out: Path, *extra: str) -> list[dict]:
    args = external.parse_args(["--provenance", str(sources / "sources.jsonl"), "--out", str(out), "--size", "64",
                                "--sheet", "gen-a=2x2", "--sheet", "gen-b=2x2", "--workers", "1",
                                "--val", "0.25", "--test", "0.25", *extra])
    external.build(args)
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_cells_cut_a_sheet_into_its_pictures():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    got = list(external.cells(_sheet(colours, 16), (2, 2)))
    assert [c for c, _ in got] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    for (_, im), colour in zip(got, colours):
        assert im.size == (16, 16) and (np.asarray(im) == colour).all()
    with pytest.raises(ValueError, match="equal cells"):
        list(external.cells(Image.new("RGB", (33, 32)), (2, 2)))
    assert [c for c, _ in external.cells(Image.new("RGB", (5, 7)), None)] == [None]


@pytest.mark.parametrize("size,expected", [
    ((100, 100), [(0, 0, 100, 100)]),
    ((200, 100), [(0, 0, 100, 100), (100, 0, 200, 100)]),
    ((100, 260), [(0, 0, 100, 100), (0, 80, 100, 180), (0, 160, 100, 260)]),
    ((130, 100), [(15, 0, 115, 100)]),
])
def test_square_tiles_cover_the_longer_side(size, expected):
    assert external.square_tiles(*size) == expected


def test_one_normalisation_whatever_the_input(sources, tmp_path):
    """Every stored image is a metadata-free RGB PNG of the same size, whatever its format, mode, shape."""
    rows = _build(sources, tmp_path / "ds")
    labels = {r["label"] for r in rows}
    assert labels == {"ai-mimicry", "human"}
    for r in rows:
        with Image.open(tmp_path / "ds" / r["path"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 64))
            assert not {k for k in im.info if k not in ("dpi",)}, im.info
    # The transparent clip art was composited onto white, not black.
    clip = next(r for r in rows if r["source"] == "clipart")
    assert Image.open(tmp_path / "ds" / clip["path"]).getpixel((0, 0)) == (255, 255, 255)
    # A 2x2 sheet gives four cells; a 2:1 painting two tiles; a 1:2 clip art two tiles.
    assert sum(r["source"] == "gen-a" for r in rows) == 8 * 4
    assert sum(r["source"] == "paintings" for r in rows) == 6 * 2
    skipped = [json.loads(x) for x in (tmp_path / "ds" / "skipped.jsonl").read_text().splitlines()]
    reasons = sorted(s["skipped"].split(":")[0] for s in skipped)
    assert reasons == ["20x20", "unreadable"]


def test_rows_carry_provenance(sources, tmp_path):
    rows = _build(sources, tmp_path / "ds")
    ai = next(r for r in rows if r["source"] == "gen-b")
    assert ai["label"] == "ai-mimicry" and ai["generator"] == "gen-b" and ai["artist"].startswith("Artist ")
    assert ai["repo"] == "example/gen-b" and ai["commit"] == "c" * 40 and ai["path_in_repo"].startswith("img/")
    assert ai["cell"] in ([0, 0], [1, 0], [0, 1], [1, 1]) and len(ai["sha256"]) == 64
    assert Path(ai["origin_path"]).is_file()
    data = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert sum(data["by_split_and_label"].values()) == len(rows)
    assert data["generators"] == ["gen-a", "gen-b"]


def test_splits_never_share_a_group(sources, tmp_path):
    rows = _build(sources, tmp_path / "ds")
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["group"], r["split"]) == r["split"], r["group"]
    # The same imitated artist under two generators is one group.
    a = {r["split"] for r in rows if r["artist"] == "Artist 3"}
    assert len(a) == 1 and {r["source"] for r in rows if r["artist"] == "Artist 3"} == {"gen-a", "gen-b"}
    assert "train" in {r["split"] for r in rows} and len({r["split"] for r in rows}) >= 2


def test_leave_one_source_out(sources, tmp_path):
    rows = _build(sources, tmp_path / "ds", "--holdout-source", "gen-b")
    assert {r["split"] for r in rows if r["source"] == "gen-b"} <= {"test", "excluded"}
    trained = {r["group"] for r in rows if r["split"] in ("train", "val")}
    for r in rows:
        if r["source"] == "gen-b":  # excluded exactly when its artist is trained on through gen-a
            assert (r["split"] == "excluded") == (r["group"] in trained)
    assert any(r["split"] == "test" for r in rows if r["source"] == "gen-b")
    assert any(r["split"] == "train" for r in rows if r["source"] == "gen-a")
    # A held-out source that shares no group with others is wholly in test.
    rows = _build(sources, tmp_path / "ds3", "--holdout-source", "paintings")
    assert {r["split"] for r in rows if r["source"] == "paintings"} == {"test"}
    with pytest.raises(ValueError, match="no source"):
        _build(sources, tmp_path / "ds2", "--holdout-source", "nope")


def test_provenance_rows_are_checked(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"file": "x.png", "label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="p.jsonl:1"):
        external.read_provenance(tmp_path / "p.jsonl")


def test_realworld_augmentation_is_label_blind_and_shapes_every_input():
    aug = realworld_augmentations(48)
    for mode, size in [("RGB", (64, 64)), ("RGB", (300, 120)), ("L", (80, 90))]:
        im = Image.new(mode, size, 128).convert("RGB")
        random.seed(1)
        a = aug(im)
        random.seed(1)
        b = aug(im)
        assert a.size == (48, 48) and a.mode == "RGB"
        assert np.array_equal(np.asarray(a), np.asarray(b))  # seeded per item: reproducible


def test_small_sources_step_enlarges_a_small_copy_for_both_classes():
    # Fine detail (per-pixel noise) survives the usual crop-and-resize, and does not survive being shrunk to a
    # small file's size and enlarged back: the step shows the model what the detector does to a small upload.
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8))

    def detail(p: float) -> float:
        aug, out = realworld_augmentations(320, small_sources=p), []
        for seed in range(12):
            random.seed(seed)
            img = aug(src)
            assert img.size == (320, 320) and img.mode == "RGB"
            out.append(np.abs(np.diff(np.asarray(img, dtype=np.float32), axis=1)).mean())
        return float(np.mean(out))

    assert detail(1.0) < 0.5 * detail(0.0)


def test_downscale_crops_never_enlarge_a_stored_square_to_the_input(monkeypatch):
    # The crop is cut and resized in one call (resize with a box): record each box's side against the output's.
    seen = []
    real_resize = Image.Image.resize

    def recording_resize(self, size, resample=None, box=None, reducing_gap=None):
        if box is not None:
            seen.append((box[2] - box[0], size[0]))
        return real_resize(self, size, resample, box, reducing_gap)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    src = Image.new("RGB", (384, 384), (90, 120, 30))
    for crops in ("any", "downscale"):
        seen.clear()
        aug = realworld_augmentations(320, crops=crops)
        for seed in range(60):
            random.seed(seed)
            assert aug(src).size == (320, 320)
        enlarged = sum(side < out for side, out in seen)
        assert len(seen) == 60
        assert (enlarged == 0) if crops == "downscale" else (enlarged > 20)  # about 58% with "any"


def test_hue_option_widens_the_jitter_and_is_checked():
    from mimicry.training import finetune

    # A saturated red square: the jitter's hue shift is the only step that moves its hue far.
    src = Image.new("RGB", (384, 384), (220, 30, 30))

    def hue_moves(hue: float) -> list[float]:
        aug, out = realworld_augmentations(64, hue=hue), []
        for seed in range(40):
            random.seed(seed)
            h = np.asarray(aug(src).convert("HSV"), dtype=np.float32)[..., 0] / 255.0
            moved = float(np.median(np.minimum(h, 1.0 - h)))  # distance from red (hue 0) around the circle
            out.append(moved)
        return out

    narrow, wide = hue_moves(0.08), hue_moves(0.5)
    assert max(narrow) < 0.1  # the shipped range keeps red near red (greyscale draws give hue 0)
    assert sum(m > 0.2 for m in wide) >= 10  # any hue: about 60% of the jittered draws land beyond 0.2
    # the default draws exactly what an explicit 0.08 draws
    random.seed(7)
    a = realworld_augmentations(64)(src)
    random.seed(7)
    assert np.array_equal(np.asarray(a), np.asarray(realworld_augmentations(64, hue=0.08)(src)))
    base = ["--manifest", "m", "--out", "o"]
    assert finetune.settings_of(finetune.parse_args(base + ["--augment", "realworld", "--hue", "0.5"]))["hue"] == 0.5
    for bad in (["--augment", "realworld", "--hue", "0.7"], ["--augment", "realworld", "--hue", "-0.1"],
                ["--hue", "0.3"]):  # out of range; or a step of another augmentation
        with pytest.raises(SystemExit):
            finetune.parse_args(base + bad)


def test_file_facts_and_colour_features():
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 200, 30)).save(buf, format="JPEG", quality=50)
    facts = file_facts(buf.getvalue())
    assert facts[1] == 1.0 and facts[6] == 40 and facts[7] == 20 and facts[-1] > 0  # JPEG, size, quantisation
    grey = colour_features(Image.new("RGB", (50, 50), (128, 128, 128)))
    red = colour_features(Image.new("RGB", (50, 50), (255, 0, 0)))
    assert grey.shape == red.shape and not np.allclose(grey, red)


def test_card_training_data_block_matches_the_manifest(sources, tmp_path):
    from mimicry.training.export import training_data_block

    rows = _build(sources, tmp_path / "ds", "--holdout-source", "paintings")
    manifest = tmp_path / "ds" / "manifest.jsonl"
    data = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    block = training_data_block(manifest, data, "test data")
    assert sum(block["counts"].values()) == len(rows)
    for source, entry in block["sources"].items():
        for split, n in entry["counts"].items():
            assert n == sum(r["source"] == source and r["split"] == split for r in rows)
    assert block["sources"]["gen-a"]["generators"] == ["gen-a"]
    assert block["sources"]["gen-a"]["repositories"] == ["example/gen-a@" + "c" * 40]
    assert block["holdout"]["sources"] == ["paintings"]
    assert block["sources"]["paintings"]["counts"] == {"test": 12}


def test_reconstruction_twins_join_their_originals_split(sources, tmp_path):
    from tiny_sd import build_tiny_pipeline

    from mimicry.training import twins

    rows = _build(sources, tmp_path / "ds")
    base = build_tiny_pipeline(tmp_path / "base")
    twins.main(twins.parse_args(["--dataset", str(tmp_path / "ds"), "--base", str(base),
                                 "--out", str(tmp_path / "ds-twins"), "--splits", "train", "val", "test"]))
    out = [json.loads(x) for x in (tmp_path / "ds-twins" / "manifest.jsonl").read_text().splitlines()]
    made = [r for r in out if r["source"] == "vae-twins"]
    humans = [r for r in rows if r["label"] == "human"]
    assert len(out) == len(rows) + len(humans) and len(made) == len(humans)
    by_path = {r["path"]: r for r in rows}
    for t in made:
        original = by_path[t["twin_of"]]
        assert t["label"] == "ai-mimicry" and (t["split"], t["group"]) == (original["split"], original["group"])
        with Image.open(tmp_path / "ds-twins" / t["path"]) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
    # Every row, old or new, resolves from the new manifest's folder.
    assert all((tmp_path / "ds-twins" / r["path"]).is_file() for r in out)


def test_evaluation_report_states_goals_from_the_measured_figures(tmp_path):
    from mimicry.training.realworld_report import report

    def entry(auroc, ai, human):
        return {"pooled": {"auroc": auroc, "ai_flagged": ai, "human_flagged": human, "n_ai": 10, "n_human": 10},
                "gen-a": {"label": "ai-mimicry", "n": 10, "flagged": ai, "auroc": auroc},
                "paintings": {"label": "human", "n": 10, "flagged": human}}

    shipped = {"backbone": "lite0", "balance": "source", "seed": 0}
    main = {"manifest": "data/rw/manifest.jsonl", "n": 20, "held_out": [], "models": {"m": {
        "name": "x", "version": "1", "threshold": 0.9, "recipe": shipped,
        "by_perturbation": {"clean": entry(0.99, 0.9, 0.0), "jpeg75": entry(0.98, 0.8, 0.05)}}}}

    def run(recipe, auroc, human, data="data/rw", dropped=()):
        clean = entry(auroc, 0.5, human)
        clean.update({k: {"label": "human", "n": 10, "flagged": 0.9} for k in dropped})
        return {"manifest": "data/loso/l.jsonl", "data": data, "n": 20, "held_out": ["gen-a", "paintings", *dropped],
                "models": {"l": {"name": "x", "version": "1", "threshold": 0.8, "recipe": recipe,
                                 "by_perturbation": {"clean": clean}}}}

    loso = {"l": run(shipped, 0.96, 0.0), "l-seed1": run({**shipped, "seed": 1}, 0.91, 0.02),
            "l-other": run({**shipped, "balance": "none"}, 0.99, 0.0),
            "l-newdata": run(shipped, 0.995, 0.0, data="data/rw-v2"),
            "l-noportraits": run(shipped, 0.70, 0.0, dropped=("portraits",)),
            "l-focal": run({**shipped, "focal_gamma": 2.0}, 0.99, 0.0)}
    text = report(main, loso, ["cmd"])
    assert "| unseen artists, same generator families: AUROC >= 0.97 | 0.990 | yes |" in text
    assert "| unseen human works: <= 3% flagged after jpeg75 | highest 5.0% (jpeg75) | **no** |" in text
    # Leave-one-source-out goals are judged over every seed of the reported model's recipe, and only those:
    # one seed below the goal fails it; another recipe's better figure does not count, nor does the same recipe's
    # on other data.
    assert ("| leave-one-source-out: gen-a (never trained on) AUROC >= 0.95 (2 runs of this recipe: l, l-seed1) "
            "| 0.960, 0.910 | **no** |") in text
    assert ("| generator never trained on: gen-a AUROC >= 0.90 (2 runs of this recipe: l, l-seed1) "
            "| 0.960, 0.910 | yes |") in text
    assert "paintings <= 1% flagged at each run's threshold (2 runs of this recipe: l, l-seed1) | 0.0%, 2.0% | **no**" in text
    assert "0.990" not in text.split("## Goals")[1].split("##")[0].split("unseen human works: <= 3%")[1]
    # ... while every run is listed with its recipe.
    assert "| l-other | rw | lite0 ? | none | 0 | 0.800 | gen-a 0.990 / 50.0% | paintings 0.0% |" in text
    assert "| l-seed1 (shipped recipe) | rw | lite0 ? | source | 1 |" in text
    assert "| l-newdata | rw-v2 | lite0 ? | source | 0 |" in text
    # A run on focal loss is another recipe: its row says so, and its 0.990 joins no goal (checked above).
    assert "| l-focal | rw | lite0 ?, focal loss 2 | source | 0 |" in text
    # An ablation (a second human source held out of training too) is listed as such, and its figures, the 0.700
    # and the 90% of the source it dropped, count for no goal.
    assert "| l-noportraits (ablation: more held out) | rw | lite0 ? | source | 0 |" in text
    goals = text.split("## Goals")[1].split("##")[0]
    assert "l-noportraits" not in goals and "0.700" not in goals and "portraits <=" not in goals
    # With runs of other recipes only, the goals say that this recipe's are not measured, not that they are met.
    other_only = report(main, {"l-other": loso["l-other"]}, ["cmd"]).split("## Goals")[1].split("##")[0]
    assert "no run of this recipe on this data yet (1 run of earlier recipes or data" in other_only
    assert other_only.rstrip().endswith("| not measured |") and "gen-a" not in other_only
    # A pair this recipe has run only on earlier data keeps its goal rows, labelled so, rather than dropping out.
    earlier_only = report(main, {"l-newdata": loso["l-newdata"]}, ["cmd"]).split("## Goals")[1].split("##")[0]
    assert ("| leave-one-source-out: gen-a (never trained on) AUROC >= 0.95 (1 run of this recipe on earlier data: "
            "l-newdata) | 0.995 | yes |") in earlier_only
    assert "no run of this recipe" not in earlier_only
    # ... and when several earlier datasets ran it, only the latest one's runs count (v10 after v9, not as text).
    v9, v10 = run(shipped, 0.80, 0.0, data="data/rw-v9"), run(shipped, 0.97, 0.0, data="data/rw-v10")
    latest = report(main, {"l-v9": v9, "l-v10": v10}, ["cmd"]).split("## Goals")[1].split("##")[0]
    assert ("| leave-one-source-out: gen-a (never trained on) AUROC >= 0.95 (1 run of this recipe on earlier data: "
            "l-v10) | 0.970 | yes |") in latest
    assert "l-v9" not in latest and "0.800" not in latest
    # Human art never trained on, from source_flags' JSON: per source and per file size, each condition.
    def t(n, flagged, uncertain, errors=0):
        return {"n": n, "errors": errors, "flagged": flagged, "uncertain": uncertain}

    unseen = {"model": "x 1", "threshold": 0.9,
              "conditions": {"clean": {"games": t(20, 0.05, 0.5, errors=1)}, "jpeg75": {"games": t(20, 0.0, 0.25)}},
              "by_size": {"clean": {"128-255 px": t(20, 0.05, 0.5)}, "jpeg75": {"128-255 px": t(20, 0.0, 0.25)}}}
    text = report(main, loso, ["cmd"], [unseen])
    assert "## Human art never trained on (x 1)" in text and "Threshold 0.900." in text
    goals = text.split("## Goals")[1].split("##")[0]
    # pooled over the 20 scored works: 1 flagged clean (5.0%) fails the 1% goal; no kind reaches 100 works
    assert ("| human works never trained on, of every kind (20 scored; make unseen-human, x 1): <= 1% flagged clean, "
            "<= 3% jpeg75; clean / jpeg75 | 5.0% / 0.0% | **no** |") in goals
    assert "each kind of at least" not in goals
    big = {"model": "x 1", "threshold": 0.9, "conditions": {
        "clean": {"a": t(400, 0.0, 0.1), "b": t(150, 0.0, 0.1), "c": t(20, 0.05, 0.1)},
        "jpeg75": {"a": t(400, 0.01, 0.1), "b": t(150, 0.04, 0.1), "c": t(20, 0.05, 0.1)}}}
    goals = report(main, loso, ["cmd"], [big]).split("## Goals")[1].split("##")[0]
    # pooled (570 works: 1 clean, 11 after JPEG 75) passes; kind b, 4% after JPEG 75, fails; c is too small to judge
    assert "(570 scored; make unseen-human, x 1): <= 1% flagged clean, <= 3% jpeg75; clean / jpeg75 | 0.2% / 1.9% | yes |" in goals
    assert ("| human works never trained on, each kind of at least 100 works (2 kinds), worst: b (150) | 0.0% / 4.0% | **no** |") in goals
    assert "human works never trained on" not in report(main, loso, ["cmd"], [{**big, "model": "y 2"}]).split("## Goals")[1].split("##")[0]
    # With the training data's sources known (source_flags --not-in), kinds never trained on are a row of their own,
    # apart from files not held of kinds that were trained on: here kind a was trained on.
    goals = report(main, loso, ["cmd"], [{**big, "trained_sources": ["a"]}]).split("## Goals")[1].split("##")[0]
    assert ("| human works of kinds never trained on (170 scored; make unseen-human, x 1): <= 1% flagged clean, "
            "<= 3% jpeg75; clean / jpeg75 | 0.6% / 4.1% | **no** |") in goals
    assert ("| human works never trained on, of kinds trained on (files the training data does not hold) (400 scored; "
            "make unseen-human, x 1): <= 1% flagged clean, <= 3% jpeg75; clean / jpeg75 | 0.0% / 1.0% | yes |") in goals
    assert "of every kind" not in goals
    assert "| games | 20 | 1 | 5.0% (50.0%) | 0.0% (25.0%) |" in text
    assert "| 128-255 px | 20 | 0 | 5.0% (50.0%) | 0.0% (25.0%) |" in text
    # AI images of generators never trained on (make package-ai): a goal row over every condition, and tables.
    def a(n, auroc, ci=None):
        return {"n": n, "n_human": 20, "auroc": auroc, "ci95": ci}

    ref = "reference: test human works"
    pa = {"model": "x 1", "threshold": 0.9,
          "auroc": {c: {"source": {"templates": a(30, v, [v - 0.02, v + 0.01])},
                        "family": {"FLUX.1": a(5, 0.99), "never trained on": a(25, v)}}
                    for c, v in (("clean", 0.93), ("square400webp", 0.88))},
          "conditions": {c: {"templates": t(30, 0.2, 0.5), ref: t(20, 0.0, 0.05)} for c in ("clean", "square400webp")},
          "by_family": {c: {"FLUX.1": t(5, 0.6, 0.4), "never trained on": t(25, 0.12, 0.52), ref: t(20, 0.0, 0.05)}
                        for c in ("clean", "square400webp")},
          "by_generator": {c: {"Gen B": {**t(1, 0.0, 1.0), "mean_score": 0.7},
                               "Gen A": {**t(2, 0.0, 0.0), "mean_score": 0.1}, ref: {**t(20, 0, 0), "mean_score": 0}}
                           for c in ("clean", "square400webp")}}
    text = report(main, loso, ["cmd"], [unseen], pa)
    goals = text.split("## Goals")[1].split("##")[0]
    # the lowest condition decides: 0.88 format-matched fails the 0.90 goal although clean passes
    assert ("| generators never trained on, images packages ship (25 images; x 1): "
            "AUROC >= 0.90, clean / square400webp | 0.930 / 0.880 | **no** |") in goals
    assert "| templates | 30 | 0.930 (0.910-0.940), 20.0% (50.0%) | 0.880 (0.860-0.890), 20.0% (50.0%) |" in text
    assert "| never trained on | 25 | 0.930, 12.0% (52.0%) | 0.880, 12.0% (52.0%) |" in text
    assert "The 20 human test works flagged (uncertain): clean 0.0% (5.0%), square400webp 0.0% (5.0%)." in text
    assert text.index("| Gen A | 2 | 0.10 |") < text.index("| Gen B | 1 | 0.70 |")  # lowest mean score first
    assert "by metadata" not in text  # JSON that did not count it gets no such column
    # A generator flagged by its files' metadata, not its pixels, says so in its own column.
    for c in pa["by_generator"].values():
        c["Gen A"].update(flagged=1.0, flagged_by_metadata=1.0)
        c["Gen B"]["flagged_by_metadata"] = 0.0
        c[ref]["flagged_by_metadata"] = 0.0
    text = report(main, loso, ["cmd"], [unseen], pa)
    assert "| generator | images | mean score | flagged | by metadata | uncertain |" in text
    assert "| Gen A | 2 | 0.10 | 100.0% | 100.0% | 0.0% |" in text
    assert "package-ai" not in report(main, loso, ["cmd"], [unseen])  # without the JSON: neither goal nor section
    from mimicry.training.realworld_report import card_block

    card = card_block(main, loso, None, pa)["evaluation"]["generators_never_trained_on"]
    assert card["auroc"]["square400webp"]["family"]["never trained on"] == {"n": 25, "auroc": 0.88, "ci95": None}
    assert card["flagged"]["clean"]["never trained on"] == 0.12
    # another model's measurements stay out of this model's card
    assert "generators_never_trained_on" not in card_block(main, loso, None, {**pa, "model": "y 2"})["evaluation"]


def test_resplit_reuses_the_images_with_other_held_out_sources(sources, tmp_path):
    rows = _build(sources, tmp_path / "ds")
    args = external.parse_args(["--resplit", str(tmp_path / "ds"), "--out", str(tmp_path / "loso"),
                                "--holdout-source", "paintings"])
    external.build(args)
    new = [json.loads(x) for x in (tmp_path / "loso" / "manifest.jsonl").read_text().splitlines()]
    assert len(new) == len(rows) and not (tmp_path / "loso" / "images").exists()
    assert all((tmp_path / "loso" / r["path"]).is_file() for r in new)
    assert {r["split"] for r in new if r["source"] == "paintings"} == {"test"}
    assert [r["group"] for r in new] == [r["group"] for r in rows]
    with pytest.raises(SystemExit):
        external.parse_args(["--resplit", "x", "--provenance", "y", "--out", "z"])


def test_a_source_of_small_images_keeps_its_own_size(sources, tmp_path):
    rows = _build(sources, tmp_path / "ds", "--source-size", "clipart=32")
    sizes = {r["source"]: r["size"] for r in rows}
    assert sizes["clipart"] == 32 and sizes["gen-a"] == 64
    clip = next(r for r in rows if r["source"] == "clipart")
    assert Image.open(tmp_path / "ds" / clip["path"]).size == (32, 32)


def test_demo_provenance_pairs_each_artist_with_their_mimicry(tmp_path):
    from mimicry.training import demo_provenance

    demo = tmp_path / "demo"
    (demo / "real" / "a").mkdir(parents=True)
    (demo / "generated" / "run1").mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(demo / "real" / "a" / "a_000.png")
    Image.new("RGB", (16, 16), "blue").save(demo / "generated" / "run1" / "x.png")
    (demo / "real_manifest.jsonl").write_text(json.dumps(
        {"path": "real/a/a_000.png", "label": "human", "artist": "Ann", "license": "PD", "source": "/s.png"}) + "\n")
    (demo / "generated_manifest.jsonl").write_text(json.dumps(
        {"path": "generated/run1/x.png", "label": "ai-mimicry", "artist": "Ann", "method": "full", "run_id": "run1",
         "scheduler": "DPM", "steps": 25, "generation_id": "g1"}) + "\n"
        + json.dumps({"path": "generated/run1/missing.png", "label": "ai-mimicry", "artist": "Ann"}) + "\n")
    rows = demo_provenance.rows(demo)
    assert [(r["label"], r["artist"]) for r in rows] == [("human", "Ann"), ("ai", "Ann")]  # missing file skipped
    assert {external.group_of({**r, "label": external.LABELS[r["label"]]}) for r in rows} == {"artist:ann"}


def test_continuing_from_a_detector_checkpoint_keeps_its_head(tmp_path):
    import torch
    from safetensors.torch import save_file

    from mimicry.training.finetune import build_model

    a = build_model("tf_efficientnet_lite0", "none")
    with torch.no_grad():
        a.get_classifier().bias.fill_(3.0)
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "m.safetensors"))
    b = build_model("tf_efficientnet_lite0", str(tmp_path / "m.safetensors"))
    assert float(b.get_classifier().bias) == 3.0


def test_assigned_groups_go_where_they_are_told(sources, tmp_path):
    rows = _build(sources, tmp_path / "ds", "--assign-group", "artist:artist 1=val",
                  "--assign-group", "clipart:folder0=train")
    assert {r["split"] for r in rows if r["group"] == "artist:artist 1"} == {"val"}
    assert {r["split"] for r in rows if r["group"] == "clipart:folder0"} == {"train"}
    with pytest.raises(ValueError, match="no group"):
        _build(sources, tmp_path / "ds2", "--assign-group", "artist:nobody=train")


def test_a_quantised_graph_is_another_recipe_than_its_float_weights():
    """A leave-one-source-out run exported as int8 speaks for an int8 model, not for the float32 one made from
    the same training run (its threshold is fitted on another graph's outputs), and the other way round."""
    from mimicry.training.realworld_eval import recipe
    from mimicry.training.realworld_report import same_recipe

    settings = {"backbone": "tf_efficientnet_lite0", "input_size": 320, "balance": "source", "seed": 0,
                "epochs": 4, "freeze_blocks": 3, "augment": "realworld"}
    float_card = {"training": {"settings": settings}}
    int8_card = {**float_card, "quantization": {"kind": "static int8"}}
    assert recipe(int8_card)["graph"] == "static int8" and "graph" not in recipe(float_card)
    assert not same_recipe(recipe(int8_card), recipe(float_card))
    assert same_recipe(recipe(int8_card), recipe({**int8_card, "training": {"settings": {**settings, "seed": 1}}}))
    assert same_recipe(recipe(float_card), {**recipe(float_card), "graph": "float32"})
    # --small-sources is part of the recipe; a card from before it existed trained without it
    small = {"training": {"settings": {**settings, "small_sources": 0.25}}}
    assert not same_recipe(recipe(small), recipe(float_card))
    assert same_recipe(recipe({"training": {"settings": {**settings, "small_sources": 0.0}}}), recipe(float_card))
    # so is the threshold rule's pooling of small val sources; a card without it held each source on its own
    pooled = {**int8_card, "thresholds": {"rule": "per-source", "min_source_works": 100}}
    assert recipe(pooled)["min_source_works"] == 100
    assert not same_recipe(recipe(pooled), recipe(int8_card))
    assert same_recipe(recipe({**int8_card, "thresholds": {"min_source_works": 0}}), recipe(int8_card))
    # and an ensemble of runs is another recipe than one run
    ensemble = {**int8_card, "ensemble": {"members": ["runs/a", "runs/b"]}}
    assert recipe(ensemble)["ensemble"] == 2 and not same_recipe(recipe(ensemble), recipe(int8_card))
    # so is a probe beside the run
    probed = {**int8_card, "probe": {"fitted": {"views": 2}}}
    assert recipe(probed)["probe_views"] == 2 and not same_recipe(recipe(probed), recipe(int8_card))
    # a weight average or CutMix is another recipe (a CutMix run once counted as the shipped recipe's in the goals);
    # a card from before either existed trained without them
    for key, value in (("ema_decay", 0.998), ("cutmix", 0.5)):
        other = {**int8_card, "training": {"settings": {**settings, key: value}}}
        assert recipe(other)[key] == value and not same_recipe(recipe(other), recipe(int8_card))
        plain = {**int8_card, "training": {"settings": {**settings, key: 0.0}}}
        assert same_recipe(recipe(plain), recipe(int8_card))
    # a wider hue jitter too; a card from before --hue jittered by 0.08
    wide = {**int8_card, "training": {"settings": {**settings, "hue": 0.5}}}
    assert recipe(wide)["hue"] == 0.5 and not same_recipe(recipe(wide), recipe(int8_card))
    assert same_recipe(recipe({**int8_card, "training": {"settings": {**settings, "hue": 0.08}}}), recipe(int8_card))


def test_realworld_eval_perturbations_keep_rgb_and_change_the_image_as_named():
    from mimicry.training.realworld_eval import PERTURBATIONS, perturb

    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (600, 900, 3), dtype=np.uint8))
    for name in PERTURBATIONS:
        out = perturb(image, name, 0)
        assert out.mode == "RGB", name
    assert perturb(image, "thumb160", 0).size == (240, 160)  # the shorter side at 160 px, the aspect kept
    assert perturb(image, "resize0.5", 0).size == (450, 300)
    assert perturb(image, "upscale2", 0).size == (1800, 1200)
    webp = np.asarray(perturb(image, "webp75", 0), dtype=np.int16)  # lossy: the noise does not survive whole
    assert webp.shape == (600, 900, 3) and np.abs(webp - np.asarray(image, dtype=np.int16)).mean() > 5
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(image, "sharpen", 0)


def test_realworld_eval_always_scores_clean_and_refuses_unknown_perturbations(capsys):
    from mimicry.training.realworld_eval import parse_args

    base = ["--models", "m", "--manifest", "x.jsonl", "--json", "o.json"]
    # naming only perturbations keeps clean, first and once (every table and the threshold study read it)
    assert parse_args([*base, "--perturbations", "jpeg75", "resize0.5"]).perturbations == ["clean", "jpeg75",
                                                                                          "resize0.5"]
    assert parse_args([*base, "--perturbations", "jpeg75", "clean", "jpeg75"]).perturbations == ["clean", "jpeg75"]
    assert parse_args(base).perturbations[0] == "clean"
    with pytest.raises(SystemExit):
        parse_args([*base, "--perturbations", "sharpen"])
    assert "sharpen" in capsys.readouterr().err


def test_an_artist_written_more_than_one_way_is_one_group_when_asked():
    # Found in the v8 data: the same artists, named differently by the two generators' prompt lists, hashed into
    # different splits. With merge_names they are one group, and a held-out group follows whichever spelling.
    names = ["M.C. Escher", "M C Escher", "Takehiko Inoue", "Inoue Takehiko", "Zoë Ray", "Zoe Ray", "Ann Lee",
             "Nicu Buculei and Nathan Eady", "Nathan Eady and Nicu Buculei"]
    def rows():
        return [{"label": "ai-mimicry", "artist": n, "source": f"gen{i % 2}", "file": f"{i}.png"}
                for i, n in enumerate(names)]

    plain = rows()
    external.assign_splits(plain, 0.3, 0.3)
    assert len({r["group"] for r in plain}) == len(names)  # without it, every spelling is a group of its own
    merged = rows()
    renamed = external.assign_splits(merged, 0.3, 0.3, holdout_groups=["artist:nicu buculei and nathan eady"],
                                     merge_names=True)
    groups = {r["artist"]: r["group"] for r in merged}
    assert groups["M.C. Escher"] == groups["M C Escher"] and groups["Takehiko Inoue"] == groups["Inoue Takehiko"]
    assert groups["Zoë Ray"] == groups["Zoe Ray"] and len(set(groups.values())) == 5 and len(renamed) == 4
    for a, b in [("M.C. Escher", "M C Escher"), ("Takehiko Inoue", "Inoue Takehiko"), ("Zoë Ray", "Zoe Ray")]:
        assert next(r["split"] for r in merged if r["artist"] == a) == next(r["split"] for r in merged if r["artist"] == b)
    assert {r["split"] for r in merged if "Buculei" in r["artist"]} == {"test"}  # held out under either spelling


def _painting(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth random picture (low-frequency structure, as a pHash sees a painting) at ``size``."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8))
    return small.resize(size, Image.Resampling.BICUBIC)


def test_near_copies_across_folders_and_sources_are_one_group_when_asked(tmp_path):
    # Found in the v8 data: one animation frame at 2x and 4x, one portrait in two campaigns' folders, each file
    # its own group, so the same picture could sit in train and test. With --merge-near-copies they are one group
    # wherever they come from. Different pictures stay apart, and so do different drawings on a transparent
    # canvas and blank canvases (a first try that read transparency as black saw blank pictures everywhere and
    # chained clip art of a dozen artists into one group); a file that does not decode keeps its group.
    root = tmp_path / "src"
    root.mkdir()
    files = {"frame_2.png": _painting(1, (200, 150)), "frame_4.png": _painting(1, (400, 300)),
             "other.png": _painting(2, (400, 300)), "third.png": _painting(3, (400, 300))}
    for k, (x, y) in enumerate([(40, 60), (300, 500)]):  # two drawings: one small dark shape, far apart
        im = Image.new("RGBA", (600, 800), (0, 0, 0, 0))
        im.paste(Image.new("RGBA", (120, 160), (20, 20, 20, 255)), (x, y))
        files[f"clip{k}.png"] = im
    files["blank0.png"] = Image.new("RGBA", (600, 800), (0, 0, 0, 0))
    files["blank1.png"] = Image.new("RGB", (600, 800), "white")
    for name, im in files.items():
        im.save(root / name)
    _painting(2, (400, 300)).save(root / "other_copy.jpg", quality=70)  # the same picture re-encoded elsewhere
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    names = [("frame_2.png", "game"), ("frame_4.png", "game"), ("other.png", "game"), ("other_copy.jpg", "wallpapers"),
             ("third.png", "game"), ("clip0.png", "clipart"), ("clip1.png", "clipart"), ("blank0.png", "clipart"),
             ("blank1.png", "wallpapers"), ("broken.png", "game")]
    rows = [{"file": str(root / n), "abs_path": str(root / n), "label": "human", "source": src, "group": n}
            for n, src in names]
    signatures = [external.file_signature(r["abs_path"]) for r in rows]
    assert signatures[-1] is None and all(s is not None for s in signatures[:-1])
    plain = [dict(r) for r in rows]
    external.assign_splits(plain, 0.3, 0.3)
    assert len({r["group"] for r in plain}) == len(names)
    merged = [dict(r) for r in rows]
    renamed = external.assign_splits(merged, 0.3, 0.3, holdout_groups=["wallpapers:other_copy.jpg"],
                                     near_copies=(signatures, 10))
    group = {Path(r["file"]).name: r["group"] for r in merged}
    split = {Path(r["file"]).name: r["split"] for r in merged}
    assert group["frame_2.png"] == group["frame_4.png"] and group["other.png"] == group["other_copy.jpg"]
    assert len(set(group.values())) == len(names) - 2 and len(renamed) == 2
    assert split["other.png"] == split["other_copy.jpg"] == "test"  # the held-out copy takes its twin along
    assert split["frame_2.png"] == split["frame_4.png"]
    # two assigned groups that turn out to be one picture cannot keep two splits: a clear error, not a silent pick
    with pytest.raises(ValueError, match="two splits"):
        external.assign_splits([dict(r) for r in rows], 0.3, 0.3, near_copies=(signatures, 10),
                               assigned={"game:frame_2.png": "train", "game:frame_4.png": "test"})


def test_the_dataset_records_the_groups_it_merged_and_a_resplit_follows_them(sources, tmp_path, capsys):
    # The fixture's clip art is one red square on a transparent canvas in every file, a shade apart: near copies
    # across its two folders, which --merge-near-copies joins and dataset.json records.
    rows = _build(sources, tmp_path / "ds", "--merge-near-copies", "4", "--merge-name-variants")
    data = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert data["merge_near_copies_bits"] == 4 and data["merge_name_variants"] is True
    assert data["merged_groups"] == {"clipart:folder1": "clipart:folder0"}
    assert len({r["split"] for r in rows if r["source"] == "clipart"}) == 1
    _build(sources, tmp_path / "plain")
    # not asked for: nothing recorded, so the dataset.json of a shipped model's data rebuilds as it was
    assert "merged_groups" not in json.loads((tmp_path / "plain" / "dataset.json").read_text())

    # A resplit keeps the merged groups, and a group named by its old key follows its merged one (the Makefile's
    # leave-one-source-out targets name groups as the catalogue writes them).
    def resplit(out, *extra):
        args = external.parse_args(["--resplit", str(tmp_path / "ds"), "--out", str(tmp_path / out), "--val", "0.25",
                                    "--test", "0.25", *extra])
        external.build(args)
        return [json.loads(x) for x in (tmp_path / out / "manifest.jsonl").read_text().splitlines()]

    held = resplit("held", "--holdout-group", "clipart:folder1")
    assert {r["split"] for r in held if r["source"] == "clipart"} == {"test"}
    assert json.loads((tmp_path / "held" / "dataset.json").read_text())["merged_groups"] == data["merged_groups"]
    assigned = resplit("assigned", "--assign-group", "clipart:folder1=val")
    assert {r["split"] for r in assigned if r["source"] == "clipart"} == {"val"}
    # names that ask two splits of one group, or name no group, are errors, not a silent choice
    with pytest.raises(ValueError, match="held-out group"):
        resplit("clash", "--holdout-group", "clipart:folder0", "--assign-group", "clipart:folder1=train")
    with pytest.raises(ValueError, match="no group"):
        resplit("typo", "--holdout-group", "clipart:folder9")
    with pytest.raises(SystemExit):
        external.parse_args(["--resplit", str(tmp_path / "ds"), "--out", str(tmp_path / "x"), "--merge-near-copies",
                             "10"])
    assert "merge flags apply when a dataset is built" in capsys.readouterr().err


def test_a_held_out_spelling_follows_both_merges(tmp_path):
    # "M.C. Escher" is renamed to "M C Escher" (name variants), whose only work is a near copy of another artist's
    # file, so the group is renamed again: the held-out old spelling must still send every one of them to test.
    root = tmp_path / "src"
    root.mkdir()
    for name, seed in [("a.png", 1), ("b.png", 1), ("c.png", 2), ("d.png", 3)]:
        _painting(seed, (300, 300)).save(root / name)
    rows = [{"file": str(root / n), "abs_path": str(root / n), "label": "ai-mimicry", "source": "gen", "artist": a}
            for n, a in [("a.png", "M.C. Escher"), ("b.png", "Aaron Zed"), ("c.png", "M C Escher"),
                         ("d.png", "Someone Else")]]
    signatures = [external.file_signature(r["abs_path"]) for r in rows]
    renamed = external.assign_splits(rows, 0.3, 0.3, holdout_groups=["artist:m.c. escher"], merge_names=True,
                                     near_copies=(signatures, 10))
    split = {r["artist"]: r["split"] for r in rows}
    assert split["M.C. Escher"] == split["M C Escher"] == split["Aaron Zed"] == "test"
    assert renamed["artist:m.c. escher"] == renamed["artist:m c escher"] == "artist:aaron zed"
