"""``mimicry scan``: the command around the scan library (``mimicry.detector.scan``), for both engines.

The terminal is here, not in the library: the table printed as rows arrive, the progress bar, the
warnings and errors, the summary lines and the exit codes (``mimicry.exits``). :func:`run` is the
local engine's whole command; ``mimicry.ray_scan`` uses the same pieces for ``--engine ray``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape as _escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mimicry.detector.scan import (COLUMNS, DEFAULT_WORKERS, CsvSink, Existing, JsonlSink, ScanSummary,
                                   ScanUsageError, check_output, check_resume_columns, columns, iter_inputs,
                                   output_format, read_existing, scan)
from mimicry.exits import EXIT_ERRORS, EXIT_FLAGGED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

DEFAULT_ENCODER = "style-encoder"  # mimicry.detector.locations.DEFAULT_ENCODER
PROGRESS_MIN_FILES = 10  # below this a progress bar only flickers
_LABEL_STYLES = {"human": "green", "uncertain": "yellow", "ai-mimicry": "bold red"}


def exit_code(summary: ScanSummary) -> int:
    """1 if any row in the output is flagged (an earlier run's rows included), else 3 if any is an
    error, else 0."""
    if summary.flagged:
        return EXIT_FLAGGED
    if summary.error_rows:
        return EXIT_ERRORS
    return EXIT_OK


# ----------------------------------------------------------------------------- the terminal


class TableSink:
    """Rows as a rich table for the terminal, printed every ``every`` rows.

    The columns that are the same on every row (model, version, threshold) go once into the
    heading, so the source and the error get the width. Column widths are fixed, so the pieces
    printed batch by batch line up as one table. With ``attributed`` (rows with the attribution
    columns) two more: the closest enrolled artist with its similarity ("match" when it reaches the
    style threshold), and the enrolled work the image is a copy of.
    """

    def __init__(self, console: Console, model: str, version: str, threshold: float, every: int = 32,
                 attributed: bool = False):
        self.console, self.every, self.attributed = console, every, attributed
        self.title = f"model {model} {version}: ai-mimicry at score >= {threshold:.3f}"
        self.rows: list[dict] = []
        self.first = True

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.every:
            self._print()

    def close(self) -> None:
        if self.rows:
            self._print()

    def _print(self) -> None:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, show_header=self.first, expand=True,
                      title=_escape(self.title) if self.first else None, title_justify="left")
        table.add_column("source", ratio=3, overflow="fold")
        table.add_column("label", width=10, no_wrap=True)
        table.add_column("score", width=5, no_wrap=True, justify="right")
        if self.attributed:
            table.add_column("closest artist", ratio=2, overflow="fold")
            table.add_column("copy of", ratio=2, overflow="fold")
        table.add_column("error", ratio=2, overflow="fold")
        for r in self.rows:
            label = f"[{_LABEL_STYLES[r['label']]}]{r['label']}[/]" if r["label"] else ""
            score = f"{r['score']:.3f}" if r["score"] is not None else ""
            error = f"{r['error_code']}: {r['error']}" if r["error_code"] else ""
            cells = [_escape(r["source"]), label, score]
            if self.attributed:
                cells += _attribution_cells(r)
            table.add_row(*cells, _escape(error))
        self.console.print(table)
        self.rows, self.first = [], False


def _attribution_cells(r: dict) -> list[str]:
    """The table's "closest artist" and "copy of" cells of one row (names escaped: others wrote them)."""
    artist = ""
    if r["closest_artist"] is not None:
        mark = " [bold red]match[/]" if r["artist_match"] else ""
        artist = f"{_escape(r['closest_artist'])} {r['artist_similarity']:.3f}{mark}"
    copy_of = ""
    if r["copy_of_artist"] is not None:
        copy_of = f"[bold red]{_escape(Path(r['copy_of_work']).name)}[/] by {_escape(r['copy_of_artist'])}"
    return [artist, copy_of]


class _RateColumn(ProgressColumn):
    """Images per second, for the progress bar."""

    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.1f} img/s")



# ----------------------------------------------------------------------------- the command


def run(paths: list[str], *, recursive: bool = False, fmt: str | None = None, output: Path | None = None,
        resume: bool = False, force: bool = False, model: str | os.PathLike = "default", batch_size: int = 16,
        workers: int = DEFAULT_WORKERS, attribute: bool = False, registry: str | None = None,
        encoder: str | os.PathLike = DEFAULT_ENCODER, stdout: Console | None = None,
        stderr: Console | None = None) -> int:
    """The whole ``mimicry scan`` command on the local engine; returns its exit code (see the
    command's help).

    ``output`` is never overwritten unless ``force`` (or appended to, with ``resume``). With
    ``attribute`` (or a ``registry``: a SQLite file or a ``postgresql://`` URL; default as
    ``Registry.open`` says) rows have the attribution columns, from the style ``encoder``."""
    stdout = stdout or Console()
    stderr = stderr or Console(stderr=True)
    warn, fail = messages(stderr)

    try:
        fmt = output_format(output, fmt)
        if resume and output is None:
            raise ScanUsageError("--resume needs -o/--output: the file of the scan to resume")
        check_output(output, resume, force)
        if batch_size < 1 or workers < 0:
            raise ScanUsageError("--batch-size must be >= 1 and --workers >= 0")
        existing = read_existing(output, fmt) if resume else Existing()
        attribute = attribute or registry is not None
        check_resume_columns(existing, attribute, output)
    except ScanUsageError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot read {output}: {exc.strerror or exc}")
    report_existing(existing, output, warn, columns(attribute))

    summary = ScanSummary(previous_labels=existing.labels, previous_errors=existing.errors)
    inputs = iter_inputs(paths, recursive, warn, ignored=summary.ignore)
    first = next(inputs, None)
    if first is None:
        return fail(no_inputs_message(paths, summary))
    inputs = itertools.chain([first], inputs)

    from mimicry.detector.bundle import ModelError  # here, not at the top: `mimicry --help` stays light
    from mimicry.detector.detector import Detector

    try:
        detector = Detector.from_dir(model)
    except ModelError as exc:
        return fail(f"cannot load model: {exc}")
    if attribute:
        detector.attribution = open_attribution(registry, encoder, warn, fail)
        if detector.attribution is None:
            return EXIT_USAGE
    # The registry stays open until the last row is written (closed by the with, whatever happens).
    with detector.attribution or contextlib.nullcontext():
        # No bar when CSV/JSONL rows stream to the same terminal: they would tear it apart (and show
        # the progress themselves).
        total = None
        if stderr.is_terminal and not (output is None and fmt != "table" and stdout.is_terminal):
            total = sum(1 for _ in iter_inputs(paths, recursive))  # a cheap walk, to size the bar
        progress = None
        if total is not None and total > PROGRESS_MIN_FILES:
            progress = Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                                _RateColumn(), TimeRemainingColumn(),
                                console=stderr, redirect_stdout=False, redirect_stderr=False, transient=True)

        try:
            # While the bar is live on the same terminal, print the table above it through its console.
            console = stderr if progress and stdout.is_terminal else stdout
            sink, out_file = open_sink(fmt, output, resume, detector, console, every=batch_size,
                                       columns=existing.columns or columns(detector.attribution is not None))
        except OSError as exc:
            return fail(f"cannot write {output}: {exc.strerror or exc}")

        failed = None
        try:
            if progress is not None:
                with progress:
                    task = progress.add_task("scan", total=total)
                    scan(detector, inputs, sink, batch_size=batch_size, workers=workers, skip=existing.done,
                         summary=summary, advance=lambda: progress.advance(task))
            else:
                scan(detector, inputs, sink, batch_size=batch_size, workers=workers, skip=existing.done,
                     summary=summary)
        except OutputError as exc:
            failed = str(exc)
        except KeyboardInterrupt:
            return interrupted(stderr, summary, output)
        finally:
            failed = close_outputs(sink, out_file) or failed
        if failed:
            return output_failed(stderr, output, failed)

        print_summary(stderr, summary, detector, output)
        return exit_code(summary)


def open_attribution(registry: str | None, encoder: str | os.PathLike, warn: Callable[[str], None],
                     fail: Callable[[str], int], **kwargs):
    """The scan's :class:`~detector.attribution.Attribution` (``kwargs`` to its ``open``), or None
    after saying why it cannot be had; warns when nobody is enrolled (the columns stay empty)."""
    from mimicry.detector.attribution import Attribution
    from mimicry.detector.bundle import ModelError
    from mimicry.detector.registry import RegistryError

    try:
        att = Attribution.open(registry, encoder, **kwargs)
    except ModelError as exc:
        fail(f"cannot load the style encoder: {exc}")
        return None
    except RegistryError as exc:
        fail(f"cannot open the registry: {exc}")
        return None
    if not att.active():
        warn(f"no artists enrolled in {att.registry.path}: the attribution columns stay empty")
    return att


def no_inputs_message(paths: list[str], summary: ScanSummary) -> str:
    """Why there is nothing to scan, with the files left out for their suffix, if any."""
    n = sum(summary.ignored.values())
    left_out = f" ({n} file{'s' if n != 1 else ''} without an image suffix left out)" if n else ""
    return "no input files in " + " ".join(paths) + left_out


def messages(console: Console) -> tuple[Callable[[str], None], Callable[[str], int]]:
    """``warn(msg)`` and ``fail(msg) -> EXIT_USAGE``, printing one unwrapped line each on ``console``."""

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {_escape(msg)}", highlight=False, soft_wrap=True)

    def fail(msg: str) -> int:
        console.print(f"[red]error:[/] {_escape(msg)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE

    return warn, fail


def report_existing(existing: Existing, output: Path | None, warn: Callable[[str], None],
                    expected: tuple[str, ...] = COLUMNS) -> None:
    """Warn of what resuming into ``output`` changed or will keep; ``expected`` are the columns this
    scan's rows have."""
    if existing.dropped_partial_line:
        warn(f"dropped an incomplete last row from {output} (left by an interrupted scan); it is scanned again")
    missing = [c for c in COLUMNS if existing.columns is not None and c not in existing.columns]
    if missing:
        warn(f"{output} was written by an older version without {', '.join(missing)}; "
             "the rows appended keep its columns")
    left_out = [c for c in expected if existing.columns is not None and c not in existing.columns and c not in COLUMNS]
    if left_out:
        warn(f"{output} was written without attribution; the rows appended keep its columns, "
             f"without {', '.join(left_out)}")


def print_summary(console: Console, s: ScanSummary, detector, output: Path | None) -> None:
    """The summary lines, each one line however narrow the terminal (soft wrap: never broken)."""
    rate = s.scanned / s.seconds if s.seconds > 0 else 0.0
    parts = [f"{s.labels[k]} {k}" for k in ("human", "uncertain", "ai-mimicry")]
    n_err = sum(s.errors.values())
    errors = f"{n_err} error{'s' if n_err != 1 else ''}"
    if n_err:
        errors += " (" + ", ".join(f"{n} {code}" for code, n in s.errors.most_common()) + ")"
    console.print(f"scanned {s.scanned} image{'s' if s.scanned != 1 else ''} in {s.seconds:.1f} s "
                  f"({rate:.1f} images/s): {', '.join(parts)}, {errors}", highlight=False, soft_wrap=True)
    if s.skipped:
        prev = sum(s.previous_labels.values()) + sum(s.previous_errors.values())
        console.print(f"skipped {s.skipped} already in {_escape(str(output))} ({prev} rows from the earlier run, "
                      f"{s.previous_labels['ai-mimicry']} ai-mimicry, {sum(s.previous_errors.values())} errors)",
                      highlight=False, soft_wrap=True)
    n_ignored = sum(s.ignored.values())
    if n_ignored:
        by_count = sorted(s.ignored.items(), key=lambda kv: (-kv[1], kv[0]))
        kinds = ", ".join(f"{n} {_escape(suffix)}" for suffix, n in by_count)
        console.print(f"not scanned: {n_ignored} file{'s' if n_ignored != 1 else ''} in the folders without an "
                      f"image suffix ({kinds}); name a file to try it anyway", highlight=False, soft_wrap=True)
    console.print(f"model {detector.name} {detector.version}, trained on: "
                  f"{_escape(detector.bundle.trained_on)}", highlight=False, soft_wrap=True)
    att = getattr(detector, "attribution", None)
    if att is not None:
        console.print(f"attribution: registry {_escape(str(att.registry.path))}, style encoder {_escape(att.encoder.name)} "
                      f"{_escape(att.encoder.version)}, a match at similarity >= {att.threshold:.3f}",
                      highlight=False, soft_wrap=True)


class OutputError(Exception):
    """The rows could not be written (a full disk, a closed pipe): the scan stops there, with the rows
    written before it kept."""


class GuardedSink:
    """A sink whose write failures (``OSError``) become :class:`OutputError`, so a scan can tell "the
    output failed" from an error of its own, and whose ``close`` never raises; :func:`close_outputs`."""

    def __init__(self, sink):
        self.sink = sink

    def write(self, row: dict) -> None:
        try:
            self.sink.write(row)
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc)) from exc

    def close(self) -> None:
        self.sink.close()


def open_sink(fmt: str, output: Path | None, resume: bool, detector, console: Console, *, every: int,
              columns: tuple[str, ...] = COLUMNS):
    """``(sink, file)``: a table on ``console``, or CSV / JSONL rows into ``output`` (appended to
    with ``resume``) or onto standard output; ``file`` is the file to close, or None. ``columns``:
    those of a CSV file (the attribution columns among them show in the table too). The sink is a
    :class:`GuardedSink`. A file name that is not valid UTF-8 (Linux allows any bytes) is written as
    its own bytes (``surrogateescape``), as ``read_existing`` reads it back to resume."""
    if fmt == "table":
        return GuardedSink(TableSink(console, detector.name, detector.version, detector.bundle.thresholds.ai_mimicry,
                                     every=every, attributed="closest_artist" in columns)), None
    out_file = None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        out_file = open(output, "a" if resume else "w", encoding="utf-8", errors="surrogateescape", newline="")
    stream = out_file or sys.stdout
    return GuardedSink(CsvSink(stream, columns) if fmt == "csv" else JsonlSink(stream)), out_file


def close_outputs(sink, out_file) -> str | None:
    """Close the sink and the output file; the reason they failed (the last rows could not be written), or
    None."""
    try:
        sink.close()
        if out_file is not None:
            out_file.close()
    except OSError as exc:
        if out_file is not None:
            with contextlib.suppress(OSError):
                out_file.close()  # a second try finds the buffer as it was: give the descriptor back anyway
        return exc.strerror or str(exc)
    return None


def output_failed(console: Console, output: Path | None, why: str) -> int:
    """Say that the rows could not be written, and where those before are; the exit code (2, as for an output
    that cannot be opened: not 1, which would read as "flagged")."""
    where = f"{output} ({why}); the rows before are kept: run again with --resume to finish" if output else \
        f"the rows to standard output ({why})"
    console.print(f"error: cannot write {_escape(where)}", highlight=False, soft_wrap=True)
    return EXIT_USAGE


def interrupted(console: Console, summary: ScanSummary, output: Path | None) -> int:
    """Say where the rows written before Ctrl-C are; the exit code of an interrupted scan."""
    where = f"{output}; run again with --resume to finish" if output else "the terminal"
    console.print(f"interrupted after {summary.scanned} images; rows so far are in {_escape(where)}",
                  highlight=False, soft_wrap=True)
    return EXIT_INTERRUPTED
