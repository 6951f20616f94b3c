"""The ``mimicry`` command: a thin layer over the packages' own entry points.

Training commands forward their arguments to the module's ``argparse`` parser (``--help`` shows its
options) and import torch only when run, so ``mimicry --help`` stays fast. ``scan`` forwards its
options to ``mimicry.scan_cli.run`` (onnxruntime, never torch). A command whose extra is not
installed (train, serve, keys, ``scan --engine ray``) says which in one line and exits 2
(:mod:`mimicry.extras`).
"""

from __future__ import annotations

import importlib
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from mimicry.exits import interruptible
from mimicry.extras import needs_extra

# What scan --model accepts: mimicry.detector.locations.resolve_model_dir reads the value.
MODEL_HELP = ("Detector: a model directory (model.onnx + model.json), or a name looked up in "
              "$MIMICRY_MODELS, then among the bundled models.")

app = typer.Typer(help="Detect AI imitations of a human artist's style.", no_args_is_help=True,
                  add_completion=False)
train_app = typer.Typer(help="Make a detector: corpus, tiny base, DreamBooth, generation, dataset.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

FORWARD = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True,
                                "help_option_names": []}}


def _forward(module: str, ctx: typer.Context, entry: str = "main") -> None:
    with needs_extra("train", f"train {ctx.info_name}"):
        fn = getattr(importlib.import_module(module), entry)
        # argparse names the program after sys.argv[0]: its usage line then shows the command as typed here
        # ("mimicry train dreambooth ..."), not "mimicry ...", which cannot be run as written.
        argv0, sys.argv[0] = sys.argv[0], ctx.command_path
        try:
            code = fn(list(ctx.args)) or 0
        finally:
            sys.argv[0] = argv0
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version as v

        typer.echo(f"mimicry-detect {v('mimicry-detect')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Detect AI imitations of a human artist's style."""


@train_app.command("corpus", **FORWARD)
def corpus(ctx: typer.Context) -> None:
    """Normalise the demo artists' openclipart works into a credited corpus."""
    _forward("mimicry.training.corpus", ctx)


@train_app.command("tiny-base", **FORWARD)
def tiny_base(ctx: typer.Context) -> None:
    """Train the tiny Stable-Diffusion-architecture base model (about 75 CPU minutes)."""
    _forward("mimicry.training.tiny_base", ctx)


@train_app.command("dreambooth", **FORWARD)
def dreambooth(ctx: typer.Context) -> None:
    """Fine-tune a base model on one artist's works (DreamBooth, full or LoRA)."""
    _forward("mimicry.training.dreambooth", ctx, entry="cli")


@train_app.command("generate", **FORWARD)
def generate(ctx: typer.Context) -> None:
    """Generate mimicry images from a DreamBooth run, with provenance rows."""
    _forward("mimicry.training.generate", ctx)


@train_app.command("dataset", **FORWARD)
def dataset(ctx: typer.Context) -> None:
    """Build the whole real-versus-mimicry dataset for given artists."""
    _forward("mimicry.training.build_dataset", ctx)


class ScanFormat(str, Enum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


class ScanEngine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def scan(
    paths: Annotated[list[str], typer.Argument(
        help="Image files, folders or glob patterns (quote them).", show_default=False)],
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Descend into subfolders.")] = False,
    fmt: Annotated[Optional[ScanFormat], typer.Option(
        "--format", show_default=False, help="Output format \\[default: from the -o suffix, else table].")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", show_default=False,
        help="Write rows to this file (.csv or .jsonl; .parquet with --engine ray) instead of the terminal.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Skip sources already in the -o file and append the rest.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing -o file (without it, or --resume, the scan refuses).")] = False,
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)] = "default",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per inference batch.")] = 16,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, show_default=False,
        help="Threads decoding the next batch during inference; 0 decodes in line "
             "\\[default: CPUs, at most 8].")] = None,
    engine: Annotated[ScanEngine, typer.Option(
        "--engine", help="local: this process; ray: a Ray cluster (needs the scale extra).")] = ScanEngine.local,
    address: Annotated[Optional[str], typer.Option(
        "--address", show_default=False,
        help="Ray cluster to join, from one of its nodes (auto, or HEAD:6379) \\[default: start a local one].")] = None,
    actors: Annotated[Optional[int], typer.Option(
        "--actors", min=1, show_default=False,
        help="Ray: onnxruntime actors \\[default: one per cluster CPU, or per GPU share].")] = None,
    gpus_per_actor: Annotated[float, typer.Option(
        "--gpus-per-actor", min=0, help="Ray: GPUs per actor (0: CPU actors).")] = 0.0,
    cpus_per_actor: Annotated[int, typer.Option(
        "--cpus-per-actor", min=1, help="Ray: CPUs per actor (its decode and onnxruntime threads).")] = 1,
    attribute: Annotated[bool, typer.Option(
        "--attribute", help="Add the attribution columns, from the default registry "
                            "($MIMICRY_REGISTRY, else registry.sqlite3 in the user data dir).")] = False,
    registry: Annotated[Optional[str], typer.Option(
        "--registry", show_default=False,
        help="Add the attribution columns, from this registry: a SQLite file or a postgresql:// URL.")] = None,
    encoder: Annotated[str, typer.Option(
        "--encoder", help="Style encoder for attribution: a directory, or a name ($MIMICRY_MODELS, "
                          "then the bundled models).")] = "style-encoder",
) -> None:
    """Say for each image whether it is an AI imitation of an artist's style.

    Folders give their .png .jpg .jpeg .webp .gif .bmp .tif .tiff files
    (top level only, unless -r; the summary counts the other files left out);
    files named explicitly are always tried.
    A file that cannot be read becomes an error row, not a failed scan.
    Columns: source, label (human / uncertain / ai-mimicry), label_reason,
    score, threshold, signals, model, model_version, error_code, error.
    label_reason: score-at-or-above-threshold, score-in-uncertain-band,
    score-below-uncertain-band, or declared-ai-by-metadata (the file's
    metadata says a generator made it). signals: the provenance signals
    found in its metadata (a list in JSONL, ;-joined in CSV).
    With --registry or --attribute, five more, the same attribution as
    check and the API give: closest_artist, artist_similarity, artist_match
    (the similarity reaches the style encoder's threshold), copy_of_artist,
    copy_of_work (the enrolled work the image is a copy of); empty when
    nobody is enrolled or nothing is found.
    An existing -o file is kept: --resume appends to it, --force overwrites it.

    Exit codes (with --resume, over every row in the file):
      0    all files scanned, none flagged
      1    at least one ai-mimicry verdict
      2    usage error, model not loadable, or no input files
      3    some files had errors (and none was flagged)
      130  interrupted; the rows written so far are kept (rerun with --resume)

    With --engine ray, inputs may also be URIs that pyarrow reads (s3://...),
    and rows come in completion order, not input order.
    """
    with interruptible():
        from mimicry import scan_cli

        if engine is ScanEngine.ray:
            with needs_extra("scale", "scan --engine ray"):
                from mimicry import ray_scan  # imports ray: only here
            code = ray_scan.run(
                paths, recursive=recursive, fmt=fmt.value if fmt else None, output=output, resume=resume,
                force=force, model=model, address=address, options=ray_scan.RayOptions(
                    actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                    batch_size=batch_size), attribute=attribute, registry=registry, encoder=encoder)
        else:
            code = scan_cli.run(
                paths, recursive=recursive, fmt=fmt.value if fmt else None, output=output, resume=resume,
                force=force, model=model, batch_size=batch_size,
                workers=scan_cli.DEFAULT_WORKERS if workers is None else workers,
                attribute=attribute, registry=registry, encoder=encoder)
    raise typer.Exit(code)


@app.command()
def calibrate(
    human: Annotated[list[str], typer.Argument(
        help="Folders (or files) of works known to be human; each first-level subfolder is one kind.",
        show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", help="The calibrated model directory to write.",
                                      show_default=False)],
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)] = "default",
    ai: Annotated[Optional[list[str]], typer.Option(
        "--ai", show_default=False, help="Folders (or files) of AI images: their share flagged before and after is "
                                         "reported (the human works alone set the threshold).")] = None,
    max_fpr: Annotated[float, typer.Option(
        "--max-fpr", help="Share of the human works, and of each kind, that may be flagged.")] = 0.01,
    under: Annotated[Optional[list[str]], typer.Option(
        "--under", show_default=False,
        help="Hold the bound under this re-encoding of every human work too (repeat): jpeg95, jpeg75, jpeg50, "
             "resize0.5, resize0.25, centre_crop50, blur1, webp.")] = None,
    min_works: Annotated[int, typer.Option(
        "--min-works", min=0, help="Kinds of fewer works are held to the bound together, not one by one.")] = 0,
    allow_lower: Annotated[bool, typer.Option(
        "--allow-lower", help="Let these works set a threshold below the model's own (kinds absent from them "
                              "are then flagged more).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the model files in an existing --out.")] = False,
    name: Annotated[Optional[str], typer.Option("--name", show_default=False,
                                                help="Name on the card [default: the model's].")] = None,
    version_: Annotated[Optional[str], typer.Option(
        "--version", show_default=False, help="Version on the card [default: the model's, +calibrated].")] = None,
    report: Annotated[Optional[Path], typer.Option(
        "--report", show_default=False, help="Also write the full report (every kind, every unreadable file) "
                                             "as JSON here.")] = None,
) -> None:
    """Set the detector's threshold on your own human works, without training.

    Scores the works as scan does, holds at most --max-fpr of them (and of
    each kind) flagged, and writes --out: the same model.onnx and a card
    whose thresholds say what they were set on. Files that cannot be read are
    left out and counted. By default the threshold never goes below the
    model's own. Exit codes: 0 written, 2 nothing written (with the reason).
    """
    with interruptible():
        from mimicry import calibrate_cli

        code = calibrate_cli.run(human, out, model=model, ai=ai or [], max_fpr=max_fpr, under=tuple(under or ()),
                                 min_works=min_works, allow_lower=allow_lower, force=force, name=name,
                                 version=version_, report_json=report)
    raise typer.Exit(code)


from mimicry.serve_cli import keys_app, serve  # noqa: E402  (light: imports the service only when run)

app.command("serve")(serve)
app.add_typer(keys_app, name="keys")

from mimicry.artists_cli import artists_app, check  # noqa: E402  (light: the registry loads only when run)

app.add_typer(artists_app, name="artists")
app.command("check")(check)

from mimicry.explain_cli import explain  # noqa: E402  (light: the model loads only when run)

app.command("explain")(explain)


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as v

    typer.echo(v("mimicry-detect"))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
