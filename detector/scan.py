"""``mimicry scan``: verdicts for files, folders and glob patterns, as a table, CSV or JSONL.

Plain functions; ``mimicry/cli.py`` only forwards its options to :func:`run`. Built for scans of
any size: paths are streamed from the file system, verdicts are written (and flushed) one row at a
time, and no image outlives its batch, so memory stays flat. ``--resume`` reads an interrupted
scan's output, skips the sources already in it and appends the rest; without ``--resume`` (or
``--force``) an existing output file is never overwritten.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from rich import box
from rich.console import Console
from rich.markup import escape as _escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .verdict import Verdict, label_reason, signal_names

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# One row per source. ``label_reason``: why the label (mimicry.detector.verdict.label_reason);
# ``signals``: names of the provenance signals found (a list in JSONL, ";"-joined in CSV).
COLUMNS = ("source", "label", "label_reason", "score", "threshold", "signals", "model", "model_version",
           "error_code", "error")
# The columns of CSV files written before label_reason and signals: --resume appends to them in kind.
LEGACY_COLUMNS = ("source", "label", "score", "threshold", "model", "model_version", "error_code", "error")
CSV_LIST_SEPARATOR = ";"
FORMATS = ("table", "csv", "jsonl")
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
EXIT_OK, EXIT_FLAGGED, EXIT_USAGE, EXIT_ERRORS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PROGRESS_MIN_FILES = 10  # below this a progress bar only flickers
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
_GLOB_CHARS = frozenset("*?[")
_LABEL_STYLES = {"human": "green", "uncertain": "yellow", "ai-mimicry": "bold red"}


class ScanUsageError(Exception):
    """A scan that cannot start as asked (exit code 2)."""


# ----------------------------------------------------------------------------- inputs


def iter_inputs(paths: Iterable[str], recursive: bool = False,
                warn: Callable[[str], None] | None = None,
                ignored: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield the files to scan, lazily and in a stable order.

    A file named explicitly is always yielded, whatever its suffix (and so is a path that does not
    exist, so that it gets a ``not_found`` row). A directory yields its files with an image suffix
    (:data:`IMAGE_SUFFIXES`), its subdirectories too with ``recursive``. A path with ``*``, ``?``
    or ``[`` is a glob pattern (``**`` spans directories with ``recursive``) whose matches count as
    named, exactly as if the shell had expanded it. ``warn`` hears of patterns and directories
    that yield nothing; ``ignored`` hears of each file a directory holds but does not yield
    because of its suffix.
    """
    for arg in paths:
        if _GLOB_CHARS.intersection(arg) and not os.path.exists(arg):
            matches = sorted(glob.glob(arg, recursive=recursive))
            if not matches and warn:
                warn(f"no files match {arg}")
            for m in matches:
                if os.path.isdir(m):
                    yield from _walk_dir(m, recursive, warn, ignored)
                else:
                    yield m
        elif os.path.isdir(arg):
            yield from _walk_dir(arg, recursive, warn, ignored)
        else:
            yield arg


def _walk_dir(directory: str, recursive: bool, warn: Callable[[str], None] | None,
              ignored: Callable[[str], None] | None = None) -> Iterator[str]:
    found = False
    stack = [directory]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if warn:
                warn(f"cannot list {d}: {exc.strerror or exc}")
            continue
        subdirs = []
        for e in entries:
            if e.is_dir(follow_symlinks=False):  # symlinked folders could loop forever
                subdirs.append(e.path)
            elif e.is_file():
                if _is_image_name(e.name):
                    found = True
                    yield e.path
                elif ignored:
                    ignored(e.path)
        if recursive:
            stack.extend(reversed(subdirs))  # depth first, in name order
    if not found and warn:
        warn(f"no image files in {directory}" + ("" if recursive else " (use -r for subfolders)"))


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


# ----------------------------------------------------------------------------- rows and sinks


def output_format(output: Path | None, fmt: str | None) -> str:
    """The format to write: ``fmt`` if given, else from ``output``'s suffix, else a table."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ScanUsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        if fmt == "table" and output is not None:
            raise ScanUsageError("the table format is for the terminal; write csv or jsonl to a file")
        return fmt
    if output is None:
        return "table"
    try:
        return SUFFIX_FORMATS[output.suffix.lower()]
    except KeyError:
        raise ScanUsageError(f"cannot tell the format from {output.name!r}; name it .csv or .jsonl, "
                             "or give --format csv|jsonl") from None


def check_output(output: Path | None, resume: bool, force: bool) -> None:
    """Refuse (:class:`ScanUsageError`) to overwrite an existing, non-empty output file unless
    ``resume`` (append to it) or ``force`` (replace it) says so; the two together contradict."""
    if resume and force:
        raise ScanUsageError("give --resume (append to the file) or --force (overwrite it), not both")
    if output is None or resume or force:
        return
    try:
        exists = output.is_file() and output.stat().st_size > 0
    except OSError:
        return  # not there to lose; opening it for writing reports any other problem
    if exists:
        raise ScanUsageError(f"{output} already exists; give --resume to finish that scan into it, "
                             "or --force to overwrite it")


def verdict_row(v: Verdict) -> dict:
    """A verdict as one output row with exactly the :data:`COLUMNS`: the verdict's fields, why it
    has its label (:func:`~detector.verdict.label_reason`) and the names of its provenance signals
    (:func:`~detector.verdict.signal_names`, a list or None)."""
    row = {c: getattr(v, c, None) for c in COLUMNS}
    row["label_reason"] = label_reason(v)
    row["signals"] = signal_names(v)
    if row["error"]:
        row["error"] = " ".join(row["error"].split())  # one row, one line: resume relies on it
    return row


class CsvSink:
    """Rows as CSV, flushed one at a time; the header only when the file starts empty.

    A list (``signals``) is one cell, its items joined by :data:`CSV_LIST_SEPARATOR`; None is an
    empty cell. ``columns`` are the ones written (a file begun with :data:`LEGACY_COLUMNS` keeps
    them when resumed); row keys outside them are left out.
    """

    def __init__(self, f: IO[str], columns: tuple[str, ...] = COLUMNS):
        self.f = f
        self.writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        if not f.seekable() or f.tell() == 0:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: _csv_cell(v) for k, v in row.items()})
        self.f.flush()

    def close(self) -> None:
        self.f.flush()


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return CSV_LIST_SEPARATOR.join(map(str, value))
    return value


class JsonlSink:
    """One JSON object per line, flushed one at a time."""

    def __init__(self, f: IO[str]):
        self.f = f

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.flush()


class TableSink:
    """Rows as a rich table for the terminal, printed every ``every`` rows.

    The columns that are the same on every row (model, version, threshold) go once into the
    heading, so the source and the error get the width. Column widths are fixed, so the pieces
    printed batch by batch line up as one table.
    """

    def __init__(self, console: Console, model: str, version: str, threshold: float, every: int = 32):
        self.console, self.every = console, every
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
        table.add_column("error", ratio=2, overflow="fold")
        for r in self.rows:
            label = f"[{_LABEL_STYLES[r['label']]}]{r['label']}[/]" if r["label"] else ""
            score = f"{r['score']:.3f}" if r["score"] is not None else ""
            error = f"{r['error_code']}: {r['error']}" if r["error_code"] else ""
            table.add_row(_escape(r["source"]), label, score, _escape(error))
        self.console.print(table)
        self.rows, self.first = [], False


class _RateColumn(ProgressColumn):
    """Images per second, for the progress bar."""

    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.1f} img/s")


# ----------------------------------------------------------------------------- resume


@dataclasses.dataclass
class Existing:
    """What an earlier, interrupted scan already wrote; ``columns`` are a CSV file's (rows appended
    to it keep them: :data:`LEGACY_COLUMNS` for a file written before label_reason and signals)."""

    done: set[str] = dataclasses.field(default_factory=set)
    labels: Counter = dataclasses.field(default_factory=Counter)
    errors: Counter = dataclasses.field(default_factory=Counter)
    dropped_partial_line: bool = False
    columns: tuple[str, ...] = COLUMNS


def read_existing(path: Path, fmt: str) -> Existing:
    """Read ``path`` (``csv`` or ``jsonl``) to resume into it.

    A last line without its newline is what a killed scan leaves; it is cut off the file (so the
    rows appended next start on a line of their own) and its source is scanned again. Any other
    unreadable row is an error: resuming into a file that is not a scan output would corrupt it.
    Files written before ``label_reason`` and ``signals`` resume too: a CSV with
    :data:`LEGACY_COLUMNS` (``existing.columns`` says so) and JSONL rows without those keys.
    """
    existing = Existing()
    if not path.exists():
        return existing
    existing.dropped_partial_line = _cut_partial_last_line(path)
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            reader = csv.DictReader(f)
            if reader.fieldnames is not None:
                if tuple(reader.fieldnames) not in (COLUMNS, LEGACY_COLUMNS):
                    raise ScanUsageError(f"{path} is not a scan CSV (header {reader.fieldnames}); "
                                         "cannot resume into it")
                existing.columns = tuple(reader.fieldnames)
            rows = (r for r in reader)
        elif fmt == "jsonl":
            rows = _jsonl_rows(f, path)
        else:
            raise ScanUsageError(f"cannot resume a {fmt} output")
        for row in rows:
            existing.done.add(row["source"])
            if row.get("error_code"):
                existing.errors[row["error_code"]] += 1
            elif row.get("label"):
                existing.labels[row["label"]] += 1
    return existing


def _jsonl_rows(f: IO[str], path: Path) -> Iterator[dict]:
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ScanUsageError(f"{path}:{lineno} is not a JSON row; cannot resume into this file") from None
        if not isinstance(row, dict) or "source" not in row:
            raise ScanUsageError(f"{path}:{lineno} has no 'source'; cannot resume into this file")
        yield row


def _cut_partial_last_line(path: Path) -> bool:
    """Truncate ``path`` after its last newline; True if anything was cut."""
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return False
        pos = end
        while pos > 0:  # search backwards in blocks: the file may be large
            step = min(65536, pos)
            f.seek(pos - step)
            block = f.read(step)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = pos - step + i + 1
                break
            pos -= step
        else:
            keep = 0
        if keep == end:
            return False
        f.truncate(keep)
        return True


# ----------------------------------------------------------------------------- the scan


@dataclasses.dataclass
class ScanSummary:
    """Counts for the summary line and the exit code; ``previous_*`` are rows of an earlier run."""

    found: int = 0
    skipped: int = 0
    scanned: int = 0
    ignored: Counter = dataclasses.field(default_factory=Counter)  # files left out for their suffix, by suffix
    seconds: float = 0.0
    labels: Counter = dataclasses.field(default_factory=Counter)
    errors: Counter = dataclasses.field(default_factory=Counter)
    previous_labels: Counter = dataclasses.field(default_factory=Counter)
    previous_errors: Counter = dataclasses.field(default_factory=Counter)

    def add(self, v: Verdict) -> None:
        self.add_row({"label": v.label, "error_code": v.error_code})

    def add_row(self, row: dict) -> None:
        """Count one output row (a dict with ``label`` and ``error_code``)."""
        self.scanned += 1
        if row["error_code"]:
            self.errors[row["error_code"]] += 1
        else:
            self.labels[row["label"]] += 1

    def ignore(self, path: str) -> None:
        """Count a file left out because of its suffix (``iter_inputs(..., ignored=)``)."""
        self.ignored[os.path.splitext(path)[1].lower() or "no suffix"] += 1

    @property
    def exit_code(self) -> int:
        """1 if any row in the output is flagged, else 3 if any is an error, else 0."""
        if self.labels["ai-mimicry"] + self.previous_labels["ai-mimicry"]:
            return EXIT_FLAGGED
        if sum(self.errors.values()) + sum(self.previous_errors.values()):
            return EXIT_ERRORS
        return EXIT_OK


def scan(detector, sources: Iterable[str], sink, *, batch_size: int = 16, workers: int = DEFAULT_WORKERS,
         skip: set[str] | frozenset[str] = frozenset(), summary: ScanSummary | None = None,
         advance: Callable[[], None] = lambda: None) -> ScanSummary:
    """Write one row per source not in ``skip`` to ``sink``; return the counts.

    ``advance`` is called once per source (scanned or skipped), for a progress bar.
    """
    summary = summary or ScanSummary()

    def todo() -> Iterator[str]:
        for s in sources:
            summary.found += 1
            if s in skip:
                summary.skipped += 1
                advance()
                continue
            yield s

    start = time.perf_counter()
    try:
        for v in detector.stream(todo(), batch_size=batch_size, workers=workers):
            sink.write(verdict_row(v))
            summary.add(v)
            advance()
    finally:
        summary.seconds = time.perf_counter() - start
    return summary


def run(paths: list[str], *, recursive: bool = False, fmt: str | None = None, output: Path | None = None,
        resume: bool = False, force: bool = False, model: str | os.PathLike = "default", batch_size: int = 16,
        workers: int = DEFAULT_WORKERS, stdout: Console | None = None, stderr: Console | None = None) -> int:
    """The whole ``mimicry scan`` command; returns its exit code (see the command's help).

    ``output`` is never overwritten unless ``force`` (or appended to, with ``resume``)."""
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
    except ScanUsageError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot read {output}: {exc.strerror or exc}")
    report_existing(existing, output, warn)

    summary = ScanSummary(previous_labels=existing.labels, previous_errors=existing.errors)
    inputs = iter_inputs(paths, recursive, warn, ignored=summary.ignore)
    first = next(inputs, None)
    if first is None:
        return fail(no_inputs_message(paths, summary))
    inputs = itertools.chain([first], inputs)

    from .bundle import ModelError  # here, not at the top: keeps `import detector.scan` light
    from .detector import Detector

    try:
        detector = Detector.from_dir(model)
    except ModelError as exc:
        return fail(f"cannot load model: {exc}")

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

    out_file = None
    try:
        if fmt == "table":
            # While the bar is live on the same terminal, print above it through its console.
            sink = TableSink(stderr if progress and stdout.is_terminal else stdout, detector.name,
                             detector.version, detector.bundle.thresholds.ai_mimicry, every=batch_size)
        else:
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
                out_file = open(output, "a" if resume else "w", encoding="utf-8", newline="")
                stream = out_file
            else:
                stream = sys.stdout
            sink = CsvSink(stream, existing.columns) if fmt == "csv" else JsonlSink(stream)
    except OSError as exc:
        return fail(f"cannot write {output}: {exc.strerror or exc}")

    try:
        if progress is not None:
            with progress:
                task = progress.add_task("scan", total=total)
                scan(detector, inputs, sink, batch_size=batch_size, workers=workers, skip=existing.done,
                     summary=summary, advance=lambda: progress.advance(task))
        else:
            scan(detector, inputs, sink, batch_size=batch_size, workers=workers, skip=existing.done,
                 summary=summary)
    except KeyboardInterrupt:
        where = f"{output}; run again with --resume to finish" if output else "the terminal"
        stderr.print(f"interrupted after {summary.scanned} images; rows so far are in {_escape(where)}",
                     highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    finally:
        sink.close()
        if out_file is not None:
            out_file.close()

    _print_summary(stderr, summary, detector, output)
    return summary.exit_code


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


def report_existing(existing: Existing, output: Path | None, warn: Callable[[str], None]) -> None:
    """Warn of what resuming into ``output`` changed or will keep."""
    if existing.dropped_partial_line:
        warn(f"dropped an incomplete last row from {output} (left by an interrupted scan); it is scanned again")
    if existing.columns != COLUMNS:
        missing = ", ".join(c for c in COLUMNS if c not in existing.columns)
        warn(f"{output} was written by an older version without {missing}; the rows appended keep its columns")


def _print_summary(console: Console, s: ScanSummary, detector, output: Path | None) -> None:
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
