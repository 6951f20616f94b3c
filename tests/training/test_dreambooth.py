"""DreamBooth on a random-initialised tiny pipeline of the real architecture, a few steps each."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mimicry.training import dreambooth
from mimicry.training.base_model import BaseModelError, load_pipeline
from mimicry.training.generate import load_generator


def run_args(base: Path, instance: Path, out: Path, *extra: str, steps: int = 3) -> list[str]:
    return ["--base", str(base), "--instance-dir", str(instance), "--out", str(out), "--max-steps", str(steps),
            "--resolution", "32", "--batch-size", "2", "--checkpoint-every", "2", "--num-class-images", "3",
            "--class-steps", "2", "--learning-rate", "1e-3", *extra]


def unet_output(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 4, generator=g)
    ids = pipe.tokenizer(["sks style, clip art of a cat"], padding="max_length", max_length=16, truncation=True,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.unet(x, torch.tensor([500]), pipe.text_encoder(ids)[0]).sample


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("prior", [False, True], ids=["no-prior", "prior"])
def test_dreambooth_trains_and_exports(tiny_base, artist_dir, tmp_path, lora, prior):
    extra = (["--lora"] if lora else []) + (
        ["--with-prior-preservation", "--class-dir", str(tmp_path / "class")] if prior else [])
    record = dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, tmp_path / "run", *extra)))

    assert record["status"] == "done" and record["steps"] == 3
    assert record["method"] == ("lora" if lora else "full")
    assert math.isfinite(record["final_loss"])
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["run_id"] == record["run_id"] and saved["settings"]["lora"] is lora
    if prior:
        assert record["class_images"] == 3
        assert len(list((tmp_path / "class").glob("class_*.png"))) == 3
        prompts = [json.loads(x)["text"] for x in (tmp_path / "class" / "metadata.jsonl").read_text().splitlines()]
        assert all("sks" not in p and p.startswith("clip art of") for p in prompts)
    # The exported generator differs from the base: the weights moved.
    tuned, _ = load_generator(tmp_path / "run", "dpm++")
    base = load_pipeline(tiny_base)
    assert not torch.allclose(unet_output(tuned), unet_output(base), atol=1e-6)
    if lora:
        assert (tmp_path / "run" / "generator" / "pytorch_lora_weights.safetensors").is_file()
        assert not (tmp_path / "run" / "generator" / "unet").exists()


def test_class_images_are_made_for_the_shortfall_only(tiny_base, artist_dir, tmp_path):
    pipe = load_pipeline(tiny_base)
    made = dreambooth.ensure_class_images(pipe, tmp_path, "{caption}", ["clip art of a cat"], 2, 32, 2, seed=0)
    first = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert made == 2 and len(first) == 2
    assert dreambooth.ensure_class_images(pipe, tmp_path, "{caption}", ["clip art of a cat"], 2, 32, 2, 0) == 0
    assert dreambooth.ensure_class_images(pipe, tmp_path, "{caption}", ["clip art of a cat"], 3, 32, 2, 0) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png") if p.name in first} == first


def test_resume_continues_from_the_last_checkpoint(tiny_base, artist_dir, tmp_path):
    out = tmp_path / "run"
    straight = dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", steps=4)))
    losses_4 = json.loads((out / "checkpoint-000004" / "state.json").read_text())["losses"]
    # Interrupted after step 2: the last checkpoint is step 2 and the run is not done.
    shutil.rmtree(out / "checkpoint-000004")
    shutil.rmtree(out / "generator")
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**record, "status": "running"}))
    resumed = dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", steps=4)))
    assert resumed["run_id"] == straight["run_id"] and resumed["steps"] == 4
    # The resumed run ends at the same loss history: resuming restored weights, optimizer and RNG.
    resumed_losses = json.loads((out / "checkpoint-000004" / "state.json").read_text())["losses"]
    assert len(resumed_losses) == 4 and np.allclose(resumed_losses, losses_4, rtol=1e-5)


def test_run_id_depends_on_max_steps_and_resume_refuses_a_new_one(tiny_base, artist_dir, tmp_path):
    two = dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, tmp_path / "a", "--lora", steps=2)))
    three = dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, tmp_path / "b", "--lora", steps=3)))
    assert two["run_id"] != three["run_id"]
    with pytest.raises(ValueError, match="max_steps"):
        dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, tmp_path / "a", "--lora", steps=3)))


def test_lora_alpha_other_than_rank_survives_export(tiny_base, artist_dir, tmp_path):
    out = tmp_path / "run"
    dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", "--lora-rank", "4",
                                                   "--lora-alpha", "16")))
    tuned, _ = load_generator(out, "dpm++")
    configs = list(tuned.unet.peft_config.values())
    assert len(configs) == 1 and configs[0].r == 4 and configs[0].lora_alpha == 16


def test_interrupted_class_image_generation_leaves_no_image_without_a_caption(tiny_base, tmp_path, monkeypatch):
    pipe = load_pipeline(tiny_base)
    real_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the disk fills up half-way through the second image
            Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n partial")
            raise OSError("No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        dreambooth.ensure_class_images(pipe, tmp_path, "{caption}", ["clip art of a cat"], 3, 32, 2, seed=0)
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert dreambooth.ensure_class_images(pipe, tmp_path, "{caption}", ["clip art of a cat"], 3, 32, 2, 0) == 2
    captions = dreambooth.read_captions(tmp_path)
    images = dreambooth.list_images(tmp_path)
    assert [p.name for p in images] == ["class_00000.png", "class_00001.png", "class_00002.png"]
    assert all(captions.get(p.name) for p in images)
    assert len(dreambooth.load_examples(tmp_path, "{caption}", 32)) == 3  # every image decodes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA RNG state exists only with a CUDA device")
def test_checkpoint_restores_the_cuda_rng(tiny_base, artist_dir, tmp_path):
    out = tmp_path / "run"
    dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", "--device", "cuda", steps=2)))
    saved = torch.load(out / "checkpoint-000002" / "rng.pt", weights_only=True)
    assert "cuda" in saved
    torch.cuda.manual_seed_all(12345)
    args = dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", steps=2))
    pipe = load_pipeline(tiny_base)
    from peft import LoraConfig

    pipe.unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                     target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    opt = torch.optim.AdamW([p for p in pipe.unet.parameters() if p.requires_grad])
    dreambooth.load_checkpoint(out / "checkpoint-000002", pipe.unet, pipe.text_encoder, opt, args)
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), saved["cuda"]))


def test_resume_refuses_other_settings(tiny_base, artist_dir, tmp_path):
    out = tmp_path / "run"
    dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", steps=1)))
    with pytest.raises(ValueError, match="learning_rate"):
        dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, out, "--lora", "--learning-rate", "5e-3")))


def test_text_encoder_training_changes_the_text_encoder(tiny_base, artist_dir, tmp_path):
    dreambooth.main(dreambooth.parse_args(run_args(tiny_base, artist_dir, tmp_path / "run", "--train-text-encoder")))
    tuned = load_pipeline(tmp_path / "run" / "generator")
    base = load_pipeline(tiny_base)
    ids = torch.tensor([[0, 5, 6, 1]])
    with torch.no_grad():
        assert not torch.allclose(tuned.text_encoder(ids)[0], base.text_encoder(ids)[0])


@pytest.mark.parametrize("kind", ["missing", "not-diffusers", "bad-json", "ckpt", "bad-safetensors", "single-no-config"])
def test_bad_base_gets_one_clear_error_line(tmp_path, artist_dir, capsys, kind):
    base = tmp_path / "base"
    if kind == "not-diffusers":
        base.mkdir()
    elif kind == "bad-json":
        base.mkdir()
        (base / "model_index.json").write_text("{not json")
    elif kind == "ckpt":
        base = tmp_path / "model.ckpt"
        base.write_bytes(b"\x80\x04pickle")
    elif kind == "bad-safetensors":
        base = tmp_path / "model.safetensors"
        base.write_bytes(b"garbage that is not safetensors")
    elif kind == "single-no-config":
        from safetensors.torch import save_file

        base = tmp_path / "model.safetensors"
        save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, str(base))
    with pytest.raises(BaseModelError):
        load_pipeline(base)
    rc = dreambooth.cli(run_args(base, artist_dir, tmp_path / "run"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: base model") and str(base) in err[0]


def test_missing_instance_folder_is_a_clear_error(tiny_base, tmp_path, capsys):
    rc = dreambooth.cli(run_args(tiny_base, tmp_path / "nope", tmp_path / "run"))
    assert rc == 2 and "image folder not found" in capsys.readouterr().err


def test_prior_preservation_needs_a_class_dir(tiny_base, artist_dir, tmp_path):
    with pytest.raises(SystemExit):
        dreambooth.parse_args(run_args(tiny_base, artist_dir, tmp_path / "run", "--with-prior-preservation"))


def test_a_full_generator_loads_and_generates_with_defaults_after_half_precision(tiny_base, tmp_path):
    """Under --mixed-precision the frozen text encoder and the VAE run in fp16; the exported full
    pipeline is still one that plain DiffusionPipeline.from_pretrained loads and runs."""
    from argparse import Namespace

    from diffusers import DiffusionPipeline

    pipe = load_pipeline(tiny_base)
    pipe.text_encoder.to(torch.float16)
    pipe.vae.to(torch.float16)
    out = dreambooth.export_generator(Namespace(out=tmp_path, lora=False), pipe, pipe.unet, pipe.text_encoder)
    loaded = DiffusionPipeline.from_pretrained(out)
    loaded.set_progress_bar_config(disable=True)
    assert {loaded.unet.dtype, loaded.vae.dtype, loaded.text_encoder.dtype} == {torch.float32}
    image = loaded("sks style, clip art of a cat", num_inference_steps=2, height=32, width=32).images[0]
    assert image.size == (32, 32)
