"""The ``mimicry`` command: a thin layer over the packages' own entry points.

Training commands forward their arguments to the module's ``argparse`` parser (``--help`` shows its
options) and import torch only when run, so ``mimicry --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(help="Detect AI imitations of a human artist's style.", no_args_is_help=True,
                  add_completion=False)
train_app = typer.Typer(help="Make a detector: corpus, tiny base, DreamBooth, generation, dataset.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

FORWARD = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True,
                                "help_option_names": []}}


def _forward(module: str, ctx: typer.Context, entry: str = "main") -> None:
    fn = getattr(importlib.import_module(module), entry)
    raise typer.Exit(fn(list(ctx.args)) or 0)


@train_app.command("corpus", **FORWARD)
def corpus(ctx: typer.Context) -> None:
    """Normalise the demo artists' openclipart works into a credited corpus."""
    _forward("training.corpus", ctx)


@train_app.command("tiny-base", **FORWARD)
def tiny_base(ctx: typer.Context) -> None:
    """Train the tiny Stable-Diffusion-architecture base model (about 75 CPU minutes)."""
    _forward("training.tiny_base", ctx)


@train_app.command("dreambooth", **FORWARD)
def dreambooth(ctx: typer.Context) -> None:
    """Fine-tune a base model on one artist's works (DreamBooth, full or LoRA)."""
    _forward("training.dreambooth", ctx, entry="cli")


@train_app.command("generate", **FORWARD)
def generate(ctx: typer.Context) -> None:
    """Generate mimicry images from a DreamBooth run, with provenance rows."""
    _forward("training.generate", ctx)


@train_app.command("dataset", **FORWARD)
def dataset(ctx: typer.Context) -> None:
    """Build the whole real-versus-mimicry dataset for given artists."""
    _forward("training.build_dataset", ctx)


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as v

    typer.echo(v("mimicry-detect"))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
