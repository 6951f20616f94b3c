"""The training code on a CUDA device: what the README's GPU recipes run. Skipped without one (CI has none);
run on a lent GPU with ``pytest tests/training`` (the other training tests then train on the GPU too, since
both trainers take CUDA whenever torch sees it)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mimicry.training import dreambooth, export
from mimicry.training.base_model import load_pipeline
from mimicry.training.generate import load_generator

from test_dreambooth import run_args, unet_output  # noqa: E402  (tests/training/)
from test_finetune_export import make_dataset  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_dreambooth_in_half_precision_with_checkpointing_exports_a_float32_generator(
        tiny_base, artist_dir, tmp_path, precision, lora):
    """The README's GPU recipe (mixed precision, gradient checkpointing, prior preservation) trains and exports a
    generator that loads with plain from_pretrained and samples: every saved weight float32, whatever ran in half
    precision."""
    out = tmp_path / "run"
    extra = ["--device", "cuda", "--mixed-precision", precision, "--gradient-checkpointing",
             "--with-prior-preservation", "--class-dir", str(tmp_path / "class")] + (["--lora"] if lora else [])
    # its own process: accelerate keeps one precision per process, and the other tests' runs are float32
    done = subprocess.run([sys.executable, "-m", "mimicry.training.dreambooth",
                           *run_args(tiny_base, artist_dir, out, *extra)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["steps"] == 3 and math.isfinite(record["final_loss"])
    assert record["settings"]["mixed_precision"] == precision
    assert record["class_images"] == 3
    files = ([out / "generator" / "pytorch_lora_weights.safetensors"] if lora else
             [out / "generator" / part / "diffusion_pytorch_model.safetensors" for part in ("unet", "vae")] +
             [out / "generator" / "text_encoder" / "model.safetensors"])
    for f in files:
        assert {w.dtype for w in load_file(str(f)).values()} == {torch.float32}, f
    tuned, _ = load_generator(out, "dpm++")
    assert not torch.allclose(unet_output(tuned), unet_output(load_pipeline(tiny_base)), atol=1e-6)
    image = tuned.to("cuda")("sks style, clip art of a cat", num_inference_steps=2, height=32, width=32,
                             generator=torch.Generator("cuda").manual_seed(0)).images[0]
    assert image.size == (32, 32)


def test_dreambooth_resumes_on_the_gpu_where_it_stopped(tiny_base, artist_dir, tmp_path):
    """Interrupted after step 2 (its checkpoint the last one), the run resumes to the loss history of the
    uninterrupted run: the batch draw is per step, and the CUDA RNG (noise and timesteps are drawn on the GPU)
    travels in the checkpoint."""
    out = tmp_path / "run"
    args = run_args(tiny_base, artist_dir, out, "--device", "cuda", "--lora", steps=4)
    straight = dreambooth.main(dreambooth.parse_args(args))
    losses_4 = json.loads((out / "checkpoint-000004" / "state.json").read_text())["losses"]
    shutil.rmtree(out / "checkpoint-000004")
    shutil.rmtree(out / "generator")
    (out / "run.json").write_text(json.dumps({**json.loads((out / "run.json").read_text()), "status": "running"}))
    resumed = dreambooth.main(dreambooth.parse_args(args))
    assert resumed["run_id"] == straight["run_id"] and resumed["steps"] == 4
    resumed_losses = json.loads((out / "checkpoint-000004" / "state.json").read_text())["losses"]
    assert len(resumed_losses) == 4 and resumed_losses == pytest.approx(losses_4, rel=1e-4)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_finetune_trains_on_the_gpu_and_exports_an_onnx_model_that_matches_it(tmp_path, precision):
    """Fine-tuning takes the GPU by itself; the weights it saves are float32 and the export's parity check
    (ONNX on the CPU against torch) passes on them."""
    manifest = make_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    argv = [str(x) for x in ("--manifest", manifest, "--out", out, "--epochs", 2, "--input-size", 64,
                             "--batch-size", 8, "--workers", 0, "--lr", "1e-3", "--mixed-precision", precision)]
    # its own process: accelerate keeps one precision per process
    done = subprocess.run([sys.executable, "-m", "mimicry.training.finetune", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["mixed_precision"] == precision
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and all(math.isfinite(e["train_loss"]) and math.isfinite(e["val_loss"]) for e in history)
    weights = load_file(str(out / "model.safetensors"))
    assert {w.dtype for w in weights.values()} <= {torch.float32, torch.int64}
    card = export.main(export.parse_args(["--run", str(out), "--out", str(tmp_path / "model"), "--name", "gpu"]))
    assert card["calibration"]["method"] == "platt"
    assert card["metrics"]["onnx_parity_max_abs_logit_diff"] <= export.PARITY_TOLERANCE
