"""AI images from packages (which templates count, the evidence check) and the AUROC probe of source_flags."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from sklearn.metrics import roc_auc_score

from mimicry.detector import Detector
from mimicry.training import package_ai, pinned_packages, source_flags

ROOT = Path(__file__).resolve().parents[2]


def _image_bytes(size, fmt="WEBP", frames=1, text=None) -> bytes:
    rng = np.random.default_rng(sum(size) + frames)
    ims = [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(frames)]
    buf = io.BytesIO()
    if frames > 1:
        ims[0].save(buf, format=fmt, save_all=True, append_images=ims[1:])
    elif text:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
        ims[0].save(buf, format="PNG", pnginfo=info)
    else:
        ims[0].save(buf, format=fmt)
    return buf.getvalue()


def test_family_tells_the_trained_generator_families_from_the_rest():
    assert package_ai.family("FLUX / FLUX.1 Krea") == "FLUX.1"
    assert package_ai.family("SD 1.5 + LCM-LoRA") == "SD 1.x"
    for other in ("FLUX / FLUX.2 Klein", "SDXL / Stability", "GPT Image 2", "SD3.5 Large", "Chroma / FLUX"):
        assert package_ai.family(other) == "never trained on", other


def test_only_text_to_image_templates_with_one_still_large_thumbnail_count(tmp_path, monkeypatch):
    monkeypatch.setattr(package_ai, "CACHE", tmp_path / "cache")
    files = {"t2i-1.webp": _image_bytes((400, 400)), "small-1.webp": _image_bytes((300, 300)),
             "anim-1.webp": _image_bytes((400, 400), frames=3), "slider-1.webp": _image_bytes((400, 400)),
             "edit-1.webp": _image_bytes((400, 400)), "nomodel-1.webp": _image_bytes((400, 400))}
    wheel = tmp_path / "media-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(f"media/templates/{name}", data)
    pkg = package_ai.Package("media", "1.0")
    media = {n: (pkg, wheel, f"media/templates/{n}") for n in files}
    t2i = ["Text to Image", "Image"]
    index = [{"templates": [
        {"name": "t2i", "mediaType": "image", "tags": t2i, "models": ["Gen A", "Org"], "title": "A"},
        {"name": "small", "mediaType": "image", "tags": t2i, "models": ["Gen B"]},
        {"name": "anim", "mediaType": "image", "tags": t2i, "models": ["Gen C"]},
        {"name": "slider", "mediaType": "image", "tags": t2i, "models": ["Gen D"], "thumbnailVariant": "compareSlider"},
        {"name": "edit", "mediaType": "image", "tags": ["Image Edit"], "models": ["Gen E"]},
        {"name": "nomodel", "mediaType": "image", "tags": t2i, "models": []},
        {"name": "missing", "mediaType": "image", "tags": t2i, "models": ["Gen F"]}]}]
    rows, skipped = package_ai.template_rows(index, media)
    assert [r["group"] for r in rows] == ["t2i"]
    r = rows[0]
    assert r["generator"] == "Gen A / Org" and r["label"] == "ai" and r["family"] == "never trained on"
    assert Path(r["file"]).read_bytes() == files["t2i-1.webp"] and r["repo"] == "pypi:media" and r["commit"] == "1.0"
    assert skipped == {"under 384 px": 1, "animated": 1, "thumbnail is a compareSlider (input beside output)": 1,
                       "not text to image": 1, "index names no model": 1, "no thumbnail in the media packages": 1}


def test_an_sdcpp_file_whose_parameters_do_not_name_its_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(package_ai, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(package_ai, "SDCPP_FILES", (("a.png", "SD3 Medium", "sd3_medium"),
                                                    ("b.png", "Qwen-Image", "qwen-image")))
    archive = tmp_path / "sdcpp-0.4.0.tar.gz"

    def write(texts):
        with tarfile.open(archive, "w:gz") as t:
            for name, text in texts.items():
                data = _image_bytes((512, 512), text=text)
                info = tarfile.TarInfo(package_ai.SDCPP_ASSETS + name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))

    write({"a.png": "a cat | Model: sd3_medium_incl_clips.safetensors", "b.png": "Unet: qwen-image-Q8_0.gguf"})
    rows = package_ai.sdcpp_rows(archive)
    assert [(r["generator"], r["source"]) for r in rows] == [("SD3 Medium", "sdcpp-assets"), ("Qwen-Image", "sdcpp-assets")]
    shutil.rmtree(tmp_path / "cache")  # extracted files are reused; a new archive needs a fresh cache
    write({"a.png": "a cat | Model: sd_xl_base_1.0.safetensors", "b.png": "Unet: qwen-image-Q8_0.gguf"})
    with pytest.raises(ValueError, match="a.png.*sd3_medium"):
        package_ai.sdcpp_rows(archive)


def test_extract_refuses_a_member_that_leaves_its_folder(tmp_path):
    wheel = tmp_path / "x-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("ok.txt", "fine")
    with pytest.raises(ValueError, match="leaves its folder"):
        pinned_packages.extract(wheel, ["../../escape.txt"], tmp_path / "cache")
    assert pinned_packages.extract(wheel, ["ok.txt"], tmp_path / "cache")["ok.txt"].read_text() == "fine"


def test_square400webp_gives_every_file_the_same_format_and_size(tmp_path):
    for i, size in enumerate([(1200, 700), (500, 900), (400, 400)]):
        path = tmp_path / f"{i}.png"
        Image.open(io.BytesIO(_image_bytes(size, fmt="PNG"))).save(path)
        out = source_flags.reposted(str(path), "square400webp")
        with Image.open(io.BytesIO(out)) as im:
            assert (im.format, im.size, im.mode) == ("WEBP", (400, 400), "RGB")


def test_reference_human_works_give_each_ai_source_its_auroc(tmp_path):
    files = sorted((ROOT / "examples").glob("*.png"))
    ai = [f for f in files if f.name.startswith("mimicry")]
    human = [f for f in files if f.name.startswith("real")]
    prov = tmp_path / "ai.jsonl"
    prov.write_text("".join(json.dumps({"file": str(f), "label": "ai", "source": "toy", "family": "demo"}) + "\n"
                            for f in ai))
    manifest = tmp_path / "manifest.jsonl"  # a dataset's rows: two per human file (tiles), one in train
    manifest.write_text("".join(json.dumps({"origin_path": str(f), "label": "human", "split": "test",
                                            "generator": ""}) + "\n" for f in human for _ in range(2))
                        + json.dumps({"origin_path": str(ai[0]), "label": "ai-mimicry", "split": "test"}) + "\n"
                        + json.dumps({"origin_path": "/nowhere.png", "label": "human", "split": "train"}) + "\n")
    out = tmp_path / "o.json"
    assert source_flags.main(["--model", "default", "--provenance", str(prov), "--reference", str(manifest),
                              "--group-by", "family", "generator", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    det = Detector.from_dir("default")
    s_ai = [v.score for v in det.predict([str(f) for f in ai])]
    s_h = [v.score for v in det.predict([str(f) for f in human])]
    expected = roc_auc_score([1] * len(s_ai) + [0] * len(s_h), s_ai + s_h)
    a = got["auroc"]["clean"]
    toy = a["source"]["toy"]
    assert (toy["n"], toy["n_human"], toy["auroc"]) == (len(ai), len(human), pytest.approx(expected))
    assert toy["ci95"][0] <= toy["auroc"] <= toy["ci95"][1]  # the bootstrap interval holds the estimate
    assert a["family"]["demo"]["auroc"] == pytest.approx(expected)
    # the reference works are tallied as their own source (each file once; the train row left out)
    assert got["sources"]["reference: test human works"]["n"] == len(human)
    assert set(got["by_family"]["clean"]) == {"demo", "reference: test human works"}


def test_tally_tells_works_flagged_by_their_metadata_from_those_flagged_by_their_pixels(tmp_path):
    # The same pixels twice: once with Automatic1111's generation parameters in a PNG text chunk (the file declares
    # itself AI-made, so it is flagged whatever its score), once bare. Only the first counts as flagged by metadata.
    with Image.open(ROOT / "examples" / "real_01.png") as im:
        pixels = im.convert("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    pixels.save(tmp_path / "declared.png", pnginfo=info)
    pixels.save(tmp_path / "bare.png")
    rows = [{"abs_path": str(tmp_path / n), "source": n} for n in ("declared.png", "bare.png")]
    verdicts = Detector.from_dir("default").predict([r["abs_path"] for r in rows])
    t = source_flags.tally(rows, verdicts)
    assert verdicts[0].score == pytest.approx(verdicts[1].score)
    assert (t["declared.png"]["flagged"], t["declared.png"]["flagged_by_metadata"]) == (1.0, 1.0)
    assert t["bare.png"]["flagged_by_metadata"] == 0.0 and t["bare.png"]["flagged"] == 0.0


def test_not_in_records_the_sources_the_dataset_trained_on(tmp_path):
    # Kinds a model never saw are told from files it never saw of kinds it did: the report splits its goal rows so.
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [
        {"source": "comics", "split": "train", "label": "human"}, {"source": "comics", "split": "test", "label": "human"},
        {"source": "maps", "split": "test", "label": "human"}, {"source": "sd", "split": "train", "label": "ai-mimicry"}]))
    assert source_flags.trained_sources(manifest) == {"comics", "sd"}
    files = sorted((ROOT / "examples").glob("real_0[01].png"))
    prov = tmp_path / "p.jsonl"
    prov.write_text("".join(json.dumps({"file": str(f), "label": "human", "source": "maps"}) + "\n" for f in files))
    out = tmp_path / "o.json"
    assert source_flags.main(["--model", "default", "--provenance", str(prov), "--not-in", str(manifest),
                              "--json", str(out)]) == 0
    assert json.loads(out.read_text())["trained_sources"] == ["comics", "sd"]
