"""Scans as a library: the inputs of a scan, its rows and sinks, resuming, and the scan loop.

No terminal here (the command, its progress bar, table and exit codes are ``mimicry.scan_cli``).
Built for scans of any size: paths are streamed from the file system, verdicts are written (and
flushed) one row at a time, and no image outlives its batch, so memory stays flat. Resuming reads an
interrupted scan's output, skips the sources already in it and appends the rest
(:func:`read_existing`); :func:`check_output` refuses to overwrite an existing output file.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from .verdict import Verdict, frames_scored, label_reason, signal_names

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# One row per source. ``label_reason``: why the label (mimicry.detector.verdict.label_reason);
# ``signals``: names of the provenance signals found (a list in JSONL, ";"-joined in CSV); ``frames``:
# for an animated image, how many of its frames the score is the mean over (empty for a still image).
COLUMNS = ("source", "label", "label_reason", "score", "threshold", "signals", "frames", "model", "model_version",
           "error_code", "error")
# The columns of CSV files written before ``frames`` (PREVIOUS_COLUMNS) and before label_reason and
# signals (LEGACY_COLUMNS): --resume appends to them in kind.
PREVIOUS_COLUMNS = tuple(c for c in COLUMNS if c != "frames")
LEGACY_COLUMNS = ("source", "label", "score", "threshold", "model", "model_version", "error_code", "error")
# With attribution (a detector given an Attribution; ``mimicry scan --registry``), after COLUMNS: the
# closest enrolled artist, its similarity and whether it reaches the encoder's threshold (a match), and
# the enrolled work the image is a copy of (its artist and file name); empty when nobody is enrolled.
ATTRIBUTION_COLUMNS = ("closest_artist", "artist_similarity", "artist_match", "copy_of_artist", "copy_of_work")
ATTRIBUTED_COLUMNS = COLUMNS + ATTRIBUTION_COLUMNS
RESUMABLE_HEADERS = (COLUMNS, ATTRIBUTED_COLUMNS, PREVIOUS_COLUMNS, PREVIOUS_COLUMNS + ATTRIBUTION_COLUMNS,
                     LEGACY_COLUMNS)
CSV_LIST_SEPARATOR = ";"
FORMATS = ("table", "csv", "jsonl")
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
_GLOB_CHARS = frozenset("*?[")


class ScanUsageError(Exception):
    """A scan that cannot start as asked (the command's usage error)."""


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


def columns(attributed: bool) -> tuple[str, ...]:
    """The columns of a scan's rows: :data:`ATTRIBUTED_COLUMNS` with attribution, else :data:`COLUMNS`."""
    return ATTRIBUTED_COLUMNS if attributed else COLUMNS


def verdict_row(v: Verdict, attributed: bool = False) -> dict:
    """A verdict as one output row with exactly the :data:`COLUMNS`: the verdict's fields, why it
    has its label (:func:`~detector.verdict.label_reason`) and the names of its provenance signals
    (:func:`~detector.verdict.signal_names`, a list or None); with ``attributed``, the
    :data:`ATTRIBUTION_COLUMNS` too (:func:`attribution_cells`)."""
    row = {c: getattr(v, c, None) for c in COLUMNS}
    row["label_reason"] = label_reason(v)
    row["signals"] = signal_names(v)
    row["frames"] = frames_scored(v)
    if row["error"]:
        row["error"] = " ".join(row["error"].split())  # one row, one line: resume relies on it
    if attributed:
        row.update(attribution_cells(v))
    return row


def attribution_cells(v: Verdict) -> dict:
    """The :data:`ATTRIBUTION_COLUMNS` of a verdict, read from its evidence (``artists``,
    ``copy_of``: :class:`~detector.attribution.Evidence`); None where it says nothing."""
    top = (v.evidence.get("artists") or [None])[0]
    copy_of = v.evidence.get("copy_of")
    return {"closest_artist": top["artist"] if top else None,
            "artist_similarity": top["similarity"] if top else None,
            "artist_match": top["passes"] if top else None,
            "copy_of_artist": copy_of["artist"] if copy_of else None,
            "copy_of_work": copy_of["source"] if copy_of else None}


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
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSONL writes it
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


# ----------------------------------------------------------------------------- resume


@dataclasses.dataclass
class Existing:
    """What an earlier, interrupted scan already wrote; ``columns`` are a CSV file's header (rows
    appended to it keep them: :data:`LEGACY_COLUMNS` for a file written before label_reason and
    signals), None where there is none (no file yet, an empty one, JSONL)."""

    done: set[str] = dataclasses.field(default_factory=set)
    labels: Counter = dataclasses.field(default_factory=Counter)
    errors: Counter = dataclasses.field(default_factory=Counter)
    dropped_partial_line: bool = False
    columns: tuple[str, ...] | None = None


def read_existing(path: Path, fmt: str) -> Existing:
    """Read ``path`` (``csv`` or ``jsonl``) to resume into it.

    A last line without its newline is what a killed scan leaves; it is cut off the file (so the
    rows appended next start on a line of their own) and its source is scanned again. Any other
    unreadable row is an error: resuming into a file that is not a scan output would corrupt it.
    Files written before ``frames``, or before ``label_reason`` and ``signals``, resume too: a CSV with
    :data:`PREVIOUS_COLUMNS` or :data:`LEGACY_COLUMNS` (``existing.columns`` says so) and JSONL rows
    without those keys; so do
    CSV files written with or without attribution (:data:`ATTRIBUTED_COLUMNS`, :data:`COLUMNS`), and
    :func:`check_resume_columns` says whether this scan can append to them.
    """
    existing = Existing()
    if not path.exists():
        return existing
    existing.dropped_partial_line = _cut_partial_last_line(path)
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:  # as the scan wrote it
        if fmt == "csv":
            reader = csv.DictReader(f)
            if reader.fieldnames is not None:
                if tuple(reader.fieldnames) not in RESUMABLE_HEADERS:
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


def check_resume_columns(existing: Existing, attributed: bool, path: Path | None) -> None:
    """Refuse (:class:`ScanUsageError`) to append rows without attribution to a CSV file whose
    header has the attribution columns: their cells would be empty, which reads as "no artist".
    The other way round (attribution into a file without its columns) appends rows in the file's
    columns, as resuming an older file does."""
    if not attributed and existing.columns is not None and set(ATTRIBUTION_COLUMNS) <= set(existing.columns):
        raise ScanUsageError(f"{path} was written with attribution ({', '.join(ATTRIBUTION_COLUMNS)}); "
                             "resume it with --registry (or --attribute) as well")


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
    """A scan's counts (the command's summary line and exit code come from them); ``previous_*``
    are the rows of an earlier run that this one resumed."""

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
    def flagged(self) -> int:
        """ai-mimicry rows in the whole output, the earlier run's included."""
        return self.labels["ai-mimicry"] + self.previous_labels["ai-mimicry"]

    @property
    def error_rows(self) -> int:
        """Error rows in the whole output, the earlier run's included."""
        return sum(self.errors.values()) + sum(self.previous_errors.values())


def scan(detector, sources: Iterable[str], sink, *, batch_size: int = 16, workers: int = DEFAULT_WORKERS,
         skip: set[str] | frozenset[str] = frozenset(), summary: ScanSummary | None = None,
         advance: Callable[[], None] = lambda: None) -> ScanSummary:
    """Write one row per source not in ``skip`` to ``sink``; return the counts.

    ``advance`` is called once per source (scanned or skipped), for a progress bar. Rows have the
    attribution columns when the detector has an attribution (``detector.attribution``).
    """
    summary = summary or ScanSummary()
    attributed = getattr(detector, "attribution", None) is not None

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
            sink.write(verdict_row(v, attributed))
            summary.add(v)
            advance()
    finally:
        summary.seconds = time.perf_counter() - start
    return summary
