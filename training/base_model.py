"""Load a text-to-image base model from a local path, with one clear error line when it is wrong.

Two forms are accepted, as users have them:
* a diffusers directory (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
  ``scheduler/``), such as a saved SD 1.5 / 2.1 pipeline or this project's tiny base;
* a single-file ``.safetensors`` checkpoint (the A1111/Civitai layout). diffusers converts it, and
  needs the matching diffusers config: pass a local diffusers directory of the same architecture
  as ``config`` (nothing is fetched from a hub).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REQUIRED_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class BaseModelError(ValueError):
    """The base model path is missing or is not a usable Stable Diffusion model."""


def describe_base(path: Path) -> dict:
    """Identity of a base model for provenance: its path and a digest of its configs or file head."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for cfg in sorted(path.rglob("*.json")):
            h.update(cfg.relative_to(path).as_posix().encode())
            h.update(cfg.read_bytes())
    else:
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
    return {"path": str(path), "config_sha256": h.hexdigest()[:16]}


def check_base(path: Path, config: Path | None = None) -> Path:
    """Raise :class:`BaseModelError` with one line saying what is wrong with ``path``."""
    path = Path(path)
    if not path.exists():
        raise BaseModelError(f"base model not found: {path} (give a diffusers directory or a .safetensors file)")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise BaseModelError(f"base model {path} is not a diffusers directory: model_index.json is missing")
        try:
            json.loads((path / "model_index.json").read_text())
        except json.JSONDecodeError as exc:
            raise BaseModelError(f"base model {path}: model_index.json is not valid JSON ({exc})") from None
        missing = [s for s in REQUIRED_SUBFOLDERS if not (path / s).is_dir()]
        if missing:
            raise BaseModelError(f"base model {path} lacks the component folders: {', '.join(missing)}")
        return path
    if path.suffix != ".safetensors":
        raise BaseModelError(f"base model {path}: only .safetensors single files are accepted (no pickled .ckpt)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:
        raise BaseModelError(f"base model {path} is not a readable safetensors file: {exc}") from None
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise BaseModelError(f"base model {path} holds no Stable Diffusion UNet (no model.diffusion_model.* tensors)")
    if config is None or not Path(config).is_dir():
        raise BaseModelError(
            f"base model {path} is a single file: pass --base-config with a local diffusers directory of the "
            "same architecture (its model_index.json and component configs); nothing is fetched from a hub"
        )
    return path


def load_pipeline(path: Path, config: Path | None = None, dtype=None):
    """A ``StableDiffusionPipeline`` from ``path``, in ``dtype`` (float32 unless told otherwise)."""
    import torch
    from diffusers import StableDiffusionPipeline

    path = check_base(path, config)
    dtype = dtype or torch.float32
    try:
        if path.is_dir():
            pipe = StableDiffusionPipeline.from_pretrained(
                path, dtype=dtype, safety_checker=None, requires_safety_checker=False, local_files_only=True
            )
        else:
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=str(config), dtype=dtype, local_files_only=True,
                safety_checker=None, requires_safety_checker=False,
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BaseModelError(f"base model {path} could not be loaded: {first}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe
