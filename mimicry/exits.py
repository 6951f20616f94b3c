"""The exit codes of ``mimicry scan``, ``check`` and ``explain``: one meaning each, for every command.

0 nothing flagged, 1 at least one ai-mimicry verdict, 2 usage error or unusable model, 3 some files
had errors (and none was flagged), 130 interrupted. The scan command (``mimicry.scan_cli``, both
engines) takes them from here; the library (``mimicry.detector``) has no exit codes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer

EXIT_OK, EXIT_FLAGGED, EXIT_USAGE, EXIT_ERRORS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def for_label(label: str | None) -> int:
    """The exit code of a command that judged one image and got ``label``."""
    return EXIT_FLAGGED if label == "ai-mimicry" else EXIT_OK


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C anywhere inside (loading the model, say) ends the command with exit code 130 and one
    line, not click's "Aborted!" and exit code 1, which would read as "flagged"."""
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
