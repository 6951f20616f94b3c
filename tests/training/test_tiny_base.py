"""The tiny base model's trainer: tokenizer, components, and each stage on a few random images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mimicry.training import tiny_base


def test_tokenizer_and_components_make_a_working_pipeline(tmp_path):
    captions = ["clip art of a red apple, food fruit", "clip art of a cat, animals", "clip art of a house"] * 20
    tok = tiny_base.train_tokenizer(captions, 200, tmp_path / "tok")
    ids = tok(["sks style, clip art of a cat"]).input_ids[0]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["sks</w>", "style</w>"]  # the rare token is one token
    vae, te, unet = tiny_base.build_components(len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    assert vae.config.latent_channels == 4 and 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert unet.config.cross_attention_dim == te.config.hidden_size
    n_te = sum(p.numel() for p in te.parameters())
    total = sum(p.numel() for m in (vae, te, unet) for p in m.parameters())
    assert total * 2 + n_te * 2 < 30e6, "stored in fp16 (the text encoder in fp32), the base must fit in 30 MB"


def test_stages_train_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    captions = ["clip art of a cat"] * 6
    tok = tiny_base.train_tokenizer(captions, 100, tmp_path / "tok")
    vae, te, unet = tiny_base.build_components(len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    before = [p.detach().clone() for p in vae.parameters()]
    assert tiny_base.train_vae(vae, images, 2, 5, 2, 32, 1e-3, tmp_path, 0) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert tiny_base.train_vae(vae, images, 3, 5, 2, 32, 1e-3, tmp_path, 0) == 3  # resumed: one more step
    lat = tiny_base.encode_latents(vae, images)
    assert lat.shape == (6, 8, 8, 8) and np.isfinite(lat).all()
    steps = tiny_base.train_unet(unet, te, tok, lat, captions, 1.0, 2, 5, 2, 1e-4, tmp_path, 0)
    assert steps == 2 and (tmp_path / "unet_state.pt").is_file()


def generate_as_loaded(path, size: int = 32):
    """Load a diffusers folder the way its ecosystem does (no arguments) and make one image."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    dtypes = {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype}
    image = pipe("clip art of a cat", num_inference_steps=2, height=size, width=size,
                 generator=torch.Generator().manual_seed(0)).images[0]
    return dtypes, image


def test_save_base_writes_a_folder_that_loads_and_generates_with_defaults(tiny_base, tmp_path):
    from safetensors import safe_open

    from mimicry.training.base_model import load_pipeline
    from mimicry.training.tiny_base import save_base  # (the fixture tiny_base shadows the module here)

    out = save_base(load_pipeline(tiny_base), tmp_path / "base")
    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16  # small on disk
    dtypes, image = generate_as_loaded(out)
    assert dtypes == {torch.float32} and image.size == (32, 32)


@pytest.mark.slow
def test_the_bundled_base_loads_and_generates_with_defaults():
    base = Path(__file__).resolve().parents[2] / "models" / "tiny-sd-clipart"
    dtypes, image = generate_as_loaded(base, size=64)
    assert dtypes == {torch.float32} and image.size == (64, 64)
    assert np.asarray(image).std() > 0  # an image, not a blank
