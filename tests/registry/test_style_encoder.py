"""The style encoder bundle: loading checks, embeddings, bad sources."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from registry_fixtures import ENCODER_DIR, REPO, draw_work

from mimicry.detector import copies
from mimicry.detector.bundle import ModelError
from mimicry.detector.decode import DecodeError
from mimicry.detector.preprocess import preprocess
from mimicry.detector.style import StyleEncoder, pad_to_square, palette_vectors, write_style_card


def test_card_and_embeddings(encoder):
    card = json.loads((ENCODER_DIR / "model.json").read_text())
    palette = card.get("palette")
    assert card["kind"] == "style-encoder"
    assert encoder.dim == card["output"]["dim"] + (palette["bins"] ** 3 if palette else 0)
    assert 0 < encoder.threshold < 1 and "false attribution" in card["similarity"]["how_chosen"]
    rng = np.random.default_rng(0)
    images = [draw_work("ink", rng), draw_work("flat", rng)]
    out = encoder.embed(images + [b"not an image"])
    assert isinstance(out[2], DecodeError) and out[2].code == "unsupported_format"
    e = np.stack(out[:2])
    assert e.shape == (2, encoder.dim) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    # batching does not change an embedding
    np.testing.assert_allclose(encoder.embed_one(images[1]), e[1], atol=1e-5)


def test_non_square_images_are_padded_not_squashed(encoder):
    rng = np.random.default_rng(1)
    wide = draw_work("hatch", rng, size=96).crop((0, 20, 96, 76))
    square = pad_to_square(wide)
    assert square.size == (96, 96) and square.getpixel((0, 0)) == (255, 255, 255)
    np.testing.assert_allclose(encoder.embed_one(wide), encoder.embed_one(square), atol=1e-5)


def test_refuses_a_changed_model_or_a_detector_dir(tmp_path):
    bad = tmp_path / "enc"
    shutil.copytree(ENCODER_DIR, bad)
    with open(bad / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="does not match its model.json"):
        StyleEncoder.from_dir(bad)
    with pytest.raises(ModelError, match="kind is .detector., not .style-encoder. .is this a detector directory"):
        StyleEncoder.from_dir(REPO / "models" / "default")
    with pytest.raises(ModelError, match="not found"):
        StyleEncoder.from_dir(tmp_path / "nowhere")


def test_decode_errors_are_specific(encoder, tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (8, 8)).save(p)
    small = StyleEncoder.from_dir(ENCODER_DIR, max_bytes=10)
    with pytest.raises(DecodeError) as info:
        small.embed_one(p)
    assert info.value.code == "too_large"


def test_enrolment_images_come_back_small_and_embeddings_unchanged(encoder):
    """An enrolment keeps one full-size decode at a time: the images it keeps for thumbnails are shrunk
    as soon as the encoder's input is made, and the embeddings are those of the full images."""
    import io

    rng = np.random.default_rng(3)
    works = []
    for size in ((1600, 1200), (500, 2000), (300, 200)):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
        works.append(buf.getvalue())
    full = encoder.embed_with_images(works)
    small = encoder.embed_with_images(works, shrink=copies.shrink_in_place)  # 4 x 96 = 384 px
    for (emb_full, img_full, raw_full), (emb_small, img_small, raw_small) in zip(full, small):
        assert np.array_equal(emb_full, emb_small) and raw_full == raw_small
        if max(img_full.size) > 384:
            assert max(img_small.size) == 384
        else:
            assert img_small.size == img_full.size


def test_calibration_and_evaluation_load_works_at_the_side_the_encoder_was_built_with():
    from mimicry.training.style_encoder import thumb_of

    bundled = json.loads((ENCODER_DIR / "model.json").read_text())
    assert thumb_of(bundled) == 128  # built before the side was recorded: its works were 128-px renderings
    assert thumb_of({**bundled, "settings": {**bundled["settings"], "thumb": 224}}) == 224


def test_the_bundled_encoder_compares_works_at_its_detail_grid(encoder):
    """0.2.0 area-averages every image to its card's grid first: a work and its own area average at that
    grid are the same to it, while a crisp work and a blurred copy of it stay close."""
    detail = encoder.config.detail
    assert detail == 64
    rng = np.random.default_rng(3)
    work = draw_work("ink", rng).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)
    np.testing.assert_allclose(encoder.embed_one(work),
                               encoder.embed_one(work.resize((detail, detail), Image.Resampling.BOX)), atol=1e-5)
    from PIL import ImageFilter

    soft = work.filter(ImageFilter.GaussianBlur(2))
    assert float(encoder.embed_one(work) @ encoder.embed_one(soft)) > 0.9


def test_the_attribution_report_names_the_command_that_built_the_encoder():
    from mimicry.training.attribution_eval import _build_command

    card = json.loads((ENCODER_DIR / "model.json").read_text())
    command = _build_command(card)
    assert command.startswith("python -m mimicry.training.style_encoder --out models/style-encoder")
    assert f"--detail {card['settings']['detail']}" in command and "--thumb" not in command  # 128: the default
    assert f"--candidate {card['settings']['candidate']}" in command
    assert "--detail" not in _build_command({"settings": {"version": "0.1.1", "detail": None}})
    assert "--backbone" not in command  # the bundled trunk is the default one
    other = {"settings": {**card["settings"], "backbone": "tf_efficientnet_lite2"}}
    assert "--backbone tf_efficientnet_lite2" in _build_command(other)
    palette = card.get("palette")
    if palette:  # the palette's settings rebuild it too
        assert f"--palette-bins {palette['bins']} --palette-weight {palette['weight']}" in command


def test_the_palette_counts_the_ink_not_the_page(encoder):
    cfg = encoder.config
    page = Image.new("RGB", (128, 128), "white")
    page.paste((200, 30, 30), (10, 10, 74, 74))  # 4,096 red pixels
    page.paste((20, 40, 220), (90, 90, 106, 106))  # 256 blue ones
    v = palette_vectors(preprocess(page, cfg)[None], cfg, 4, 245)[0]
    assert v.shape == (64,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-6
    red, blue, white = (3 * 4 + 0) * 4 + 0, (0 * 4 + 0) * 4 + 3, 63
    assert v[red] > v[blue] > v[white] and v[red] ** 2 > 0.8  # the page's resampled edges hold the rest
    counted = palette_vectors(preprocess(page, cfg)[None], cfg, 4, 255)[0]  # nothing is "the page" at 255
    assert counted[white] > counted[red], "the page is most of the picture once it is counted"
    blank = palette_vectors(preprocess(Image.new("RGB", (64, 64), "white"), cfg)[None], cfg, 4, 245)[0]
    assert blank[white] == pytest.approx(1.0), "a blank page is counted whole rather than left empty"


def test_a_palette_card_joins_the_graph_and_the_palette_and_stays_unit_length(tmp_path):
    card = json.loads((ENCODER_DIR / "model.json").read_text())
    dirs = {}
    for name, palette in (("graph", None), ("joined", {"bins": 4, "weight": 0.25, "white_above": 245})):
        d = dirs[name] = tmp_path / name
        shutil.copytree(ENCODER_DIR, d)
        c = {k: v for k, v in card.items() if k not in ("palette", "onnx_sha256")}
        write_style_card(d, {**c, **({"palette": palette} if palette else {})})
    graph, joined = StyleEncoder.from_dir(dirs["graph"]), StyleEncoder.from_dir(dirs["joined"])
    assert joined.dim == graph.dim + 64
    rng = np.random.default_rng(3)
    works = [draw_work("ink", rng), draw_work("flat", rng)]
    g, j = np.stack(graph.embed(works)), np.stack(joined.embed(works))
    np.testing.assert_allclose(np.linalg.norm(j, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(j[:, :graph.dim], np.sqrt(0.75) * g, atol=1e-6)
    x = np.stack([joined.prepare(w) for w in works])
    p = palette_vectors(x, joined.config, 4, 245)
    assert float(j[0] @ j[1]) == pytest.approx(0.75 * float(g[0] @ g[1]) + 0.25 * float(p[0] @ p[1]), abs=1e-5)
    bad = tmp_path / "bad"
    shutil.copytree(dirs["joined"], bad)
    c = json.loads((bad / "model.json").read_text())
    c["palette"]["bins"] = 1
    (bad / "model.json").write_text(json.dumps(c))
    with pytest.raises(ModelError, match="palette.bins"):
        StyleEncoder.from_dir(bad)


def test_the_reposted_protocol_scores_altered_queries_against_unaltered_enrolment():
    from mimicry.training.attribution_eval import open_set, reposted

    rng = np.random.default_rng(5)
    authors = [f"a{i}" for i in range(4) for _ in range(30)]
    centres = rng.normal(size=(4, 16))
    emb = np.repeat(centres, 30, axis=0) + 0.3 * rng.normal(size=(120, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    args = (emb, authors, set(authors), 3, 20, 10, 0, "centroid", 0.5)
    same = open_set(*args, query_emb=emb.copy())
    assert same == open_set(*args)  # an unaltered copy changes nothing
    shuffled = open_set(*args, query_emb=emb[rng.permutation(120)])  # queries no longer their authors' works
    assert shuffled["top1"] < same["top1"] - 0.3
    small = reposted(np.full((128, 96, 3), 200, np.uint8))
    assert small.size == (48, 64) and small.mode == "RGB"
