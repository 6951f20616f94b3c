"""``mimicry explain IMAGE -o heat.png``: one image's verdict and a heatmap of where its evidence lies.

:func:`explain` is the typer command (``mimicry/cli.py`` registers it); it forwards its options to
the plain function :func:`run`. Importing this module loads neither onnxruntime nor the model.
The overlay is written in the format its file's suffix names (:data:`OVERLAY_FORMATS`).
"""

from __future__ import annotations

import io
import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mimicry.exits import EXIT_ERRORS, EXIT_USAGE, for_label, interruptible

_LABEL_STYLES = {"human": "green", "uncertain": "yellow", "ai-mimicry": "bold red"}
OVERLAY_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def overlay_format(output: Path) -> str:
    """The Pillow format ``output``'s suffix names; ValueError for any other suffix."""
    try:
        return OVERLAY_FORMATS[output.suffix.lower()]
    except KeyError:
        raise ValueError(f"cannot tell the image format from {output.name!r}; "
                         "name it .png, .jpg, .jpeg or .webp") from None


def encode_overlay(overlay_png: bytes, fmt: str) -> bytes:
    """The overlay (PNG bytes, as ``explain`` makes it) in Pillow format ``fmt``."""
    if fmt == "PNG":
        return overlay_png
    from PIL import Image

    with Image.open(io.BytesIO(overlay_png)) as im:
        buf = io.BytesIO()
        # The overlay is RGB already; quality 90 keeps the heat's colour edges clean.
        im.convert("RGB").save(buf, fmt, quality=90)
    return buf.getvalue()


def run(image: str, output: Path, *, model: str | os.PathLike = "default", method: str = "window", grid: int = 8,
        window: float | None = None, as_json: bool = False, stdout: Console | None = None,
        stderr: Console | None = None) -> int:
    """Write the overlay to ``output`` (PNG, JPEG or WebP, as its suffix says) and print the
    verdict; returns the exit code (:mod:`mimicry.exits`: 0 not flagged, 1 ai-mimicry, 2 usage
    error or unusable model, 3 the image cannot be read)."""
    stdout = stdout or Console(highlight=False)
    stderr = stderr or Console(stderr=True, highlight=False)

    def fail(msg: str, code: int) -> int:
        stderr.print(f"[red]error:[/] {escape(msg)}", soft_wrap=True)
        return code

    try:
        fmt = overlay_format(output)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)

    from mimicry.detector.bundle import ModelError
    from mimicry.detector.decode import DecodeError
    from mimicry.detector.detector import Detector
    from mimicry.detector.explain import explain, legend

    try:
        detector = Detector.from_dir(model)
    except ModelError as exc:
        return fail(f"cannot load model: {exc}", EXIT_USAGE)
    try:
        ex = explain(detector, image, method=method, grid=grid, window=window)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    except DecodeError as exc:
        return fail(f"{image}: {exc.code}: {exc.message}", EXIT_ERRORS)
    try:
        output.write_bytes(encode_overlay(ex.overlay_png, fmt))
    except OSError as exc:
        return fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)

    v = ex.verdict
    if as_json:
        stdout.out(json.dumps(ex.to_dict(), ensure_ascii=False))  # plain text: no wrapping, no markup
    else:
        stdout.print(f"{escape(v.source)}: [{_LABEL_STYLES[v.label]}]{v.label}[/] score {v.score:.3f} "
                     f"(ai-mimicry at >= {v.threshold:.3f}; model {escape(v.model)} {escape(v.model_version)})")
        for line in provenance_lines(v):
            stdout.print("  " + escape(line))
        stdout.print(f"  heatmap written to {escape(str(output))}: {escape(legend(ex))}")
    return for_label(v.label)


def provenance_lines(v) -> list[str]:
    """Plain lines (not rich markup) on why a scored verdict has its label when the file's metadata set it,
    and one per provenance signal the file carries: what ``explain`` and ``check`` print under the verdict."""
    lines = []
    reason = v.evidence.get("label_reason", "model-score")
    if reason != "model-score":
        lines.append(f"label from the file's metadata ({reason}); the model alone says "
                     f"{v.evidence.get('model_label')}")
    for s in v.evidence.get("provenance", []):
        claim = "declares AI" if s["declares_ai"] else "reported only"
        signed = f", C2PA signature {s['signature']}" if s["signature"] else ", unsigned"
        value = " ".join(s["value"].split())  # one line per signal
        value = value if len(value) <= 80 else value[:77] + "..."
        lines.append(f"{s['signal']} = {value} ({claim}{signed}; {s['source']})")
    return lines


class Method(str, Enum):
    window = "window"
    occlusion = "occlusion"


def explain(
    image: Annotated[str, typer.Argument(help="The image file.", show_default=False)],
    output: Annotated[Path, typer.Option(
        "-o", "--output", show_default=False,
        help="Where to write the heatmap overlay; the suffix names the format: .png, .jpg/.jpeg or .webp.")],
    model: Annotated[str, typer.Option("--model", help="Detector: a model directory (model.onnx + model.json), "
                                                       "or a name looked up in $MIMICRY_MODELS, then among the "
                                                       "bundled models.")] = "default",
    method: Annotated[Method, typer.Option(
        "--method", help="window: score each window on its own; occlusion: cover each window and "
                         "score the rest.")] = Method.window,
    grid: Annotated[int, typer.Option("--grid", help="Windows per side (2-32); grid^2 + 1 model runs.")] = 8,
    window: Annotated[float | None, typer.Option(
        "--window", show_default=False,
        help="Window side as a fraction of the image's (default: 1/4, or 2/grid for a grid under 8, so the "
             "windows cover the image).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict and a grid of the heat as JSON.")] = False,
) -> None:
    """Say whether one image is an AI imitation and show where the evidence lies.

    Prints the verdict (with any provenance signals in the file's metadata) and writes the image with a heatmap over it, in the verdict's colour (red: ai-mimicry, blue: human, amber: uncertain), strongest where the evidence for that verdict lies; the legend is printed, not drawn into the picture. An animated GIF, WebP or PNG is explained, and its verdict here scored, on its first frame only (scan and check score several frames).

    Exit codes, as for scan and check:
      0    not flagged
      1    ai-mimicry
      2    usage error (such as an -o suffix that names no image format) or unusable model
      3    the image cannot be read
      130  interrupted
    """  # noqa: E501  (one line per paragraph: the help text keeps line breaks)
    with interruptible():
        code = run(image, output, model=model, method=method.value, grid=grid, window=window, as_json=as_json)
    raise typer.Exit(code)
