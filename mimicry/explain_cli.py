"""``mimicry explain IMAGE -o heat.png``: one image's verdict and a heatmap of where its evidence lies.

:func:`explain` is the typer command (``mimicry/cli.py`` registers it); it forwards its options to
the plain function :func:`run`. Importing this module loads neither onnxruntime nor the model.
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_FLAGGED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
_LABEL_STYLES = {"human": "green", "uncertain": "yellow", "ai-mimicry": "bold red"}


def run(image: str, output: Path, *, model: str | os.PathLike = "default", method: str = "window", grid: int = 8,
        window: float = 0.25, as_json: bool = False, stdout: Console | None = None,
        stderr: Console | None = None) -> int:
    """Write the overlay PNG to ``output`` and print the verdict; returns the exit code (0 not
    flagged, 1 ai-mimicry, 2 usage error or unusable model, 3 the image cannot be read)."""
    stdout = stdout or Console(highlight=False)
    stderr = stderr or Console(stderr=True, highlight=False)

    def fail(msg: str, code: int) -> int:
        stderr.print(f"[red]error:[/] {escape(msg)}")
        return code

    from mimicry.detector.bundle import ModelError
    from mimicry.detector.decode import DecodeError
    from mimicry.detector.detector import Detector
    from mimicry.detector.explain import explain

    try:
        detector = Detector.from_dir(model)
    except ModelError as exc:
        return fail(f"cannot load model: {exc}", EXIT_USAGE)
    try:
        ex = explain(detector, image, method=method, grid=grid, window=window)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    except DecodeError as exc:
        return fail(f"{image}: {exc.code}: {exc.message}", EXIT_ERROR)
    try:
        output.write_bytes(ex.overlay_png)
    except OSError as exc:
        return fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)

    v = ex.verdict
    if as_json:
        stdout.out(json.dumps(ex.to_dict(), ensure_ascii=False))  # plain text: no wrapping, no markup
    else:
        stdout.print(f"{escape(v.source)}: [{_LABEL_STYLES[v.label]}]{v.label}[/] score {v.score:.3f} "
                     f"(ai-mimicry at >= {v.threshold:.3f}; model {escape(v.model)} {escape(v.model_version)})")
        if v.evidence.get("label_reason") != "model-score":
            stdout.print(f"  label from the file's metadata ({v.evidence['label_reason']}); "
                         f"the model alone says {v.evidence['model_label']}")
        for s in v.evidence.get("provenance", []):
            claim = "declares AI" if s["declares_ai"] else "reported only"
            signed = f", C2PA signature {s['signature']}" if s["signature"] else ", unsigned"
            value = " ".join(s["value"].split())  # one line per signal
            value = value if len(value) <= 80 else value[:77] + "..."
            stdout.print(f"  {escape(s['signal'])} = {escape(value)} ({claim}{signed}; {escape(s['source'])})")
        stdout.print(f"  heatmap ({ex.method}, {ex.grid}x{ex.grid}) written to {escape(str(output))}")
    return EXIT_FLAGGED if v.label == "ai-mimicry" else EXIT_OK


class Method(str, Enum):
    window = "window"
    occlusion = "occlusion"


def explain(
    image: Annotated[str, typer.Argument(help="The image file.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the heatmap overlay (PNG).",
                                         show_default=False)],
    model: Annotated[str, typer.Option("--model", help="Detector: a model directory (model.onnx + model.json), "
                                                       "or a name looked up in $MIMICRY_MODELS, then among the "
                                                       "bundled models.")] = "default",
    method: Annotated[Method, typer.Option(
        "--method", help="window: score each window on its own; occlusion: cover each window and "
                         "score the rest.")] = Method.window,
    grid: Annotated[int, typer.Option("--grid", help="Windows per side (2-32); grid^2 + 1 model runs.")] = 8,
    window: Annotated[float, typer.Option("--window", help="Window side as a fraction of the image's.")] = 0.25,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict and a grid of the heat as JSON.")] = False,
) -> None:
    """Say whether one image is an AI imitation and show where the evidence lies.

    Prints the verdict (with any provenance signals in the file's metadata) and writes the image with a heatmap over it: red where the evidence is for AI mimicry, blue where it is for human.

    Exit codes: 0 not flagged, 1 ai-mimicry, 2 usage error or unusable model, 3 the image cannot be read.
    """  # noqa: E501  (one line per paragraph: the help text keeps line breaks)
    raise typer.Exit(run(image, output, model=model, method=method.value, grid=grid, window=window,
                         as_json=as_json))
