"""``mimicry scan --engine ray``: the local scan's rows, computed on a Ray cluster.

For backlogs one machine cannot get through. The driver lists the inputs (local paths with the
local engine's own rules, ``mimicry.detector.scan.iter_inputs``; URIs such as ``s3://`` or ``file://``
through ``pyarrow.fs`` with the same suffix rules), and Ray Data hands them in blocks to a pool
of actors (:class:`Predictor`), each holding one detector: one onnxruntime session, on a GPU with
``gpus_per_actor``. An actor turns its sources into rows with the local engine's own code
(``Detector.stream``: safe decode, preprocessing, batched inference, calibration, provenance; then
``mimicry.detector.scan.verdict_row``), decoding in threads while the model runs, so a file that cannot be
read is an error row, never a failed task. One CPU actor per CPU by default; give GPU actors
several CPUs each (``cpus_per_actor``) for their decode threads. (A separate stateless decode
stage was tried: with CPU actors Ray Data fuses it into the actors anyway, and it would have to
copy ``Detector.load`` and the verdict rules here, where they could drift from the local engine's.)

The rows stream back to the driver, which writes them with the local engine's sinks (table, CSV,
JSONL: byte for byte the same lines) or to one Parquet file, and counts them for the same exit
codes. Rows come in completion order, not input order. The model travels to the workers through
the object store, so nodes need the package installed but no copy of the model.

With attribution (``--registry``/``--attribute``) each actor's detector also holds an
:class:`~detector.attribution.Attribution`: the style encoder travels as the model does, and the
actor opens the registry itself (it must be reachable from every node: a ``postgresql://`` URL, or a
SQLite file at the same path on each, as on one machine); rows get the local engine's attribution
columns (:data:`ATTRIBUTED_ROW_SCHEMA`).

Ray is imported here only; ``detector/`` never imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from rich.console import Console

from mimicry import exits, scan_cli
from mimicry.detector import scan as scan_lib
from mimicry.detector.bundle import ModelError
from mimicry.detector.decode import DecodeError

ROW_SCHEMA = pa.schema([
    ("source", pa.string()), ("label", pa.string()), ("label_reason", pa.string()), ("score", pa.float64()),
    ("threshold", pa.float64()), ("signals", pa.list_(pa.string())), ("frames", pa.int64()), ("model", pa.string()),
    ("model_version", pa.string()), ("error_code", pa.string()), ("error", pa.string()),
])
# With attribution (``--registry``): the local engine's attribution columns after them.
ATTRIBUTED_ROW_SCHEMA = pa.schema(list(ROW_SCHEMA) + [
    pa.field("closest_artist", pa.string()), pa.field("artist_similarity", pa.float64()),
    pa.field("artist_match", pa.bool_()), pa.field("copy_of_artist", pa.string()),
    pa.field("copy_of_work", pa.string()),
])
assert tuple(ROW_SCHEMA.names) == scan_lib.COLUMNS  # one row shape for both engines
assert tuple(ATTRIBUTED_ROW_SCHEMA.names) == scan_lib.ATTRIBUTED_COLUMNS
SOURCES_PER_BLOCK = 64  # small blocks: work spreads evenly, a retried task redoes little, rows flow early
MAX_BLOCKS = 20_000  # beyond this, bigger blocks: the driver tracks every block
_MODEL_FILES = ("model.json", "model.onnx")
_SUFFIXES = {suffix.lstrip(".") for suffix in scan_lib.IMAGE_SUFFIXES}  # pyarrow's extension has no dot


# ----------------------------------------------------------------------------- inputs


def is_uri(path: str) -> bool:
    """True for ``scheme://...`` (``s3://``, ``gs://``, ``file://``...), read through ``pyarrow.fs``."""
    return "://" in path and not os.path.exists(path)


def iter_sources(paths: Iterable[str], recursive: bool = False,
                 warn: Callable[[str], None] | None = None,
                 ignored: Callable[[str], None] | None = None) -> Iterator[str]:
    """The local engine's inputs (:func:`detector.scan.iter_inputs`), with URIs as well.

    A URI naming a directory yields its files with an image suffix (its subdirectories' too with
    ``recursive``), in path order, as URIs of the same form; any other URI is yielded as named (a
    missing one gets a ``not_found`` row). Glob patterns are for local paths only. ``ignored`` hears
    of each file a directory (local or URI) holds but does not yield because of its suffix. Raises
    :class:`~detector.scan.ScanUsageError` for a URI scheme pyarrow cannot read.
    """
    for arg in paths:
        if is_uri(arg):
            yield from _iter_uri(arg, recursive, warn, ignored)
        else:
            yield from scan_lib.iter_inputs([arg], recursive, warn, ignored)


def _iter_uri(uri: str, recursive: bool, warn: Callable[[str], None] | None,
              ignored: Callable[[str], None] | None = None) -> Iterator[str]:
    fs, path = _filesystem(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        if warn:
            warn(f"cannot stat {uri}: {exc}")
        yield uri
        return
    if info.type != pafs.FileType.Directory:
        yield uri
        return
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
    except OSError as exc:
        if warn:
            warn(f"cannot list {uri}: {exc}")
        return
    base, prefix = path.rstrip("/"), uri.rstrip("/")
    files = sorted(i.path for i in infos
                   if i.type == pafs.FileType.File and i.extension.lower() in _SUFFIXES)
    if ignored:
        for i in infos:
            if i.type == pafs.FileType.File and i.extension.lower() not in _SUFFIXES:
                ignored(prefix + i.path[len(base):])
    if not files and warn:
        warn(f"no image files in {uri}" + ("" if recursive else " (use -r for subfolders)"))
    for p in files:
        yield prefix + p[len(base):]


@functools.lru_cache(maxsize=64)
def row_schema(attributed: bool) -> pa.Schema:
    """:data:`ATTRIBUTED_ROW_SCHEMA` with attribution, else :data:`ROW_SCHEMA`."""
    return ATTRIBUTED_ROW_SCHEMA if attributed else ROW_SCHEMA


def _filesystem_root(base: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(base)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for ``uri`` and the path in it; one filesystem object per bucket or host
    and process (making one, an S3 client say, costs far more than reading a small file)."""
    scheme, _, rest = uri.partition("://")
    host, _, key = rest.partition("/")
    try:
        fs, root = _filesystem_root(f"{scheme}://{host}/")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise scan_lib.ScanUsageError(f"cannot read {uri}: {exc}") from None
    return fs, (root.rstrip("/") + "/" + key if key else root)


# ----------------------------------------------------------------------------- the actors


def _read_uri(uri: str, max_bytes: int) -> bytes:
    """A URI's bytes, refusing before reading what the local engine refuses before opening."""
    try:
        fs, path = _filesystem(uri)
    except scan_lib.ScanUsageError as exc:
        raise DecodeError("not_found", str(exc)) from None
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DecodeError("not_found", f"no such file: {uri}")
        if info.type != pafs.FileType.File:
            raise DecodeError("not_found", f"not a file: {uri}")
        if info.size is not None and info.size > max_bytes:
            raise DecodeError("too_large", f"{info.size:,} bytes exceeds the limit of {max_bytes:,}")
        with fs.open_input_stream(path) as f:
            return f.read()
    except OSError as exc:  # pyarrow's I/O errors (permissions, network) are per-file errors too
        raise DecodeError("not_found", f"cannot read {uri}: {exc}") from None


class Predictor:
    """One per actor: a :class:`~detector.detector.Detector` over the model shipped from the
    driver, turning a batch of sources into output rows.

    The rows come from ``Detector.stream`` and ``mimicry.detector.scan.verdict_row``, the local engine's
    own code: ``threads`` decode the next images while onnxruntime (``threads`` intra-op threads,
    or the GPU) runs the current batch. A local path is decoded by path, as the local engine does;
    a URI from its bytes, and its row is named by the URI.
    """

    def __init__(self, model_files: ray.ObjectRef, *, providers: list[str], threads: int, batch_size: int,
                 attribution: dict | None = None):
        from mimicry.detector.detector import Detector

        self._dir = _unpack(model_files, "mimicry-model-")  # put once by the driver, fetched once per actor
        att = None
        if attribution is not None:  # {"encoder_files": ObjectRef, "registry": location, "top_k": k}
            from mimicry.detector.attribution import Attribution

            self._encoder_dir = _unpack(attribution["encoder_files"], "mimicry-style-")
            # migrate=False: a node without the SQLite file fails here instead of making an empty registry.
            att = Attribution.open(attribution["registry"], self._encoder_dir.name, providers=providers,
                                   intra_op_threads=threads, migrate=False, top_k=attribution["top_k"])
        # from_dir checks model.onnx against model.json's sha256: a damaged copy is refused here too.
        self.detector = Detector.from_dir(self._dir.name, providers=providers, intra_op_threads=threads,
                                          attribution=att)
        if providers[0] not in self.detector.session.get_providers():  # onnxruntime falls back silently
            raise ModelError(f"GPU actors need onnxruntime with {providers[0]} on every GPU node "
                             f"(pip install onnxruntime-gpu); this one has {self.detector.session.get_providers()}")
        self.threads, self.batch_size = threads, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        det = self.detector
        attributed = det.attribution is not None
        names = [str(s) for s in batch["source"]]
        rows: list[dict | None] = [None] * len(names)
        todo, inputs = [], []
        for i, name in enumerate(names):
            if not is_uri(name):
                todo.append(i)
                inputs.append(name)
                continue
            try:
                inputs.append(_read_uri(name, det.max_bytes))
                todo.append(i)
            except DecodeError as exc:
                rows[i] = scan_lib.verdict_row(det.error_verdict(name, exc.code, exc.message), attributed)
        verdicts = det.stream(inputs, batch_size=self.batch_size, workers=self.threads)
        for i, v in zip(todo, verdicts):
            v.source = names[i]  # bytes read from a URI would be named "<bytes #n>"
            rows[i] = scan_lib.verdict_row(v, attributed)
        return pa.Table.from_pylist(rows, schema=row_schema(attributed))


def _unpack(files: ray.ObjectRef, prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory holding the files (``{name: bytes}``) the driver put in the object store."""
    directory = tempfile.TemporaryDirectory(prefix=prefix)
    for name, data in ray.get(files).items():
        Path(directory.name, name).write_bytes(data)
    return directory


# ----------------------------------------------------------------------------- the pipeline


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """How the work is spread: ``actors`` onnxruntime actors of ``cpus_per_actor`` CPUs (and
    ``gpus_per_actor`` GPUs) each; None means as many as the cluster's CPUs (or GPUs) hold."""

    actors: int | None = None
    cpus_per_actor: int = 1
    gpus_per_actor: float = 0.0
    batch_size: int = 16
    sources_per_block: int = SOURCES_PER_BLOCK


def build_dataset(sources: list[str], model_dir: Path, opts: RayOptions,
                  attribution: dict | None = None) -> ray.data.Dataset:
    """The lazy Ray Dataset of output rows (:func:`row_schema`) for ``sources``. ``attribution``:
    ``{"encoder_dir": Path, "registry": location, "top_k": k}`` for the attribution columns."""
    model_files = {name: (model_dir / name).read_bytes() for name in _MODEL_FILES}
    if attribution is not None:
        encoder_files = {name: (attribution["encoder_dir"] / name).read_bytes() for name in _MODEL_FILES}
        attribution = {"encoder_files": ray.put(encoder_files), "registry": attribution["registry"],
                       "top_k": attribution["top_k"]}
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if opts.gpus_per_actor > 0
                 else ["CPUExecutionProvider"])
    per_block = max(opts.sources_per_block, math.ceil(len(sources) / MAX_BLOCKS))
    blocks = [pa.table({"source": pa.array(sources[i:i + per_block], pa.string())})
              for i in range(0, len(sources), per_block)]
    return ray.data.from_arrow(blocks).map_batches(
        # Several inference batches per call, so that decoding overlaps inference inside the call.
        Predictor, batch_size=opts.batch_size * 4, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(opts.actors or 1, len(blocks))),  # idle actors help nobody
        num_cpus=opts.cpus_per_actor, num_gpus=opts.gpus_per_actor or None,
        fn_constructor_kwargs={"model_files": ray.put(model_files), "providers": providers,
                               "threads": opts.cpus_per_actor, "batch_size": opts.batch_size,
                               "attribution": attribution})


class ParquetSink:
    """Rows into one Parquet file (``schema``: :func:`row_schema`), a row group per ``every`` rows."""

    def __init__(self, path: Path, every: int = 4096, schema: pa.Schema = ROW_SCHEMA):
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema)
        self.rows: list[dict] = []
        self.every = every

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.every:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def output_format(output: Path | None, fmt: str | None) -> str:
    """Like :func:`detector.scan.output_format`, with ``.parquet`` as well."""
    if fmt == "parquet" or (fmt is None and output is not None and output.suffix.lower() == ".parquet"):
        if output is None:
            raise scan_lib.ScanUsageError("parquet output needs -o/--output FILE.parquet")
        return "parquet"
    return scan_lib.output_format(output, fmt)


def default_actors(opts: RayOptions) -> int:
    """One actor per ``gpus_per_actor`` GPUs of the cluster, else per ``cpus_per_actor`` CPUs."""
    resources = ray.cluster_resources()
    if opts.gpus_per_actor > 0:
        return max(1, int(resources.get("GPU", 0) // opts.gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) // opts.cpus_per_actor))


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (or the one already joined, or a new local one);
    True if this call started Ray (and should shut it down)."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True, log_to_driver=True)
    return True


def run(paths: list[str], *, recursive: bool = False, fmt: str | None = None, output: Path | None = None,
        resume: bool = False, force: bool = False, model: str | os.PathLike = "default", address: str | None = None,
        options: RayOptions = RayOptions(), attribute: bool = False, registry: str | None = None,
        encoder: str | os.PathLike = scan_cli.DEFAULT_ENCODER, stdout: Console | None = None,
        stderr: Console | None = None) -> int:
    """``mimicry scan --engine ray``; returns the local engine's exit codes (0, 1, 2, 3, 130).
    ``output`` is never overwritten unless ``force`` (or appended to, with ``resume``); ``attribute``,
    ``registry`` and ``encoder`` as for the local engine (:func:`mimicry.scan_cli.run`)."""
    stdout = stdout or Console()
    stderr = stderr or Console(stderr=True)
    warn, fail = scan_cli.messages(stderr)
    summary = scan_lib.ScanSummary()

    try:
        fmt = output_format(output, fmt)
        if resume and output is None:
            raise scan_lib.ScanUsageError("--resume needs -o/--output: the file of the scan to resume")
        if resume and fmt == "parquet":
            raise scan_lib.ScanUsageError("cannot resume into a Parquet file; write .jsonl or .csv to resume")
        scan_lib.check_output(output, resume, force)
        if (min(options.batch_size, options.cpus_per_actor, options.sources_per_block) < 1
                or (options.actors is not None and options.actors < 1) or options.gpus_per_actor < 0):
            raise scan_lib.ScanUsageError("--batch-size, --actors, cpus_per_actor and sources_per_block must be "
                                          ">= 1, --gpus-per-actor >= 0")
        existing = scan_lib.read_existing(output, fmt) if resume else scan_lib.Existing()
        attribute = attribute or registry is not None
        scan_lib.check_resume_columns(existing, attribute, output)
        found = list(iter_sources(paths, recursive, warn, ignored=summary.ignore))
    except scan_lib.ScanUsageError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot read {output}: {exc.strerror or exc}")
    scan_cli.report_existing(existing, output, warn, scan_lib.columns(attribute))
    if not found:
        return fail(scan_cli.no_inputs_message(paths, summary))
    todo = [s for s in found if s not in existing.done]

    from mimicry.detector.detector import Detector

    try:  # load on the driver too: a bad model fails here, with exit code 2, not in every actor
        detector = Detector.from_dir(model, providers=["CPUExecutionProvider"], intra_op_threads=1)
    except ModelError as exc:
        return fail(f"cannot load model: {exc}")
    attribution = None
    if attribute:  # opened on the driver too: a bad encoder or registry fails here, and it is migrated once
        detector.attribution = scan_cli.open_attribution(registry, encoder, warn, fail,
                                                         providers=["CPUExecutionProvider"], intra_op_threads=1)
        if detector.attribution is None:
            return exits.EXIT_USAGE
        attribution = {"encoder_dir": detector.attribution.encoder.path, "registry": _registry_location(registry),
                       "top_k": detector.attribution.top_k}
        detector.attribution.close()  # the actors open their own; the summary reads only names from it

    summary.found, summary.skipped = len(found), len(found) - len(todo)
    summary.previous_labels, summary.previous_errors = existing.labels, existing.errors
    started = False
    try:
        if todo:
            # Ray Data's progress bars show on a terminal; its INFO lines go to its log file only.
            os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
            started = connect(address)
            gpus = ray.cluster_resources().get("GPU", 0)
            if options.gpus_per_actor > gpus:
                return fail(f"--gpus-per-actor {options.gpus_per_actor:g} but the Ray cluster has {gpus:g} GPUs")
            options = dataclasses.replace(options, actors=options.actors or default_actors(options))
        try:
            sink, out_file = _open_sink(fmt, output, resume, detector, stdout, options.batch_size,
                                        existing.columns or scan_lib.columns(attribute))
        except OSError as exc:
            return fail(f"cannot write {output}: {exc.strerror or exc}")
        failed = None
        try:
            if todo:
                ds = build_dataset(todo, detector.bundle.path, options, attribution)  # the resolved directories
                write_rows(ds.iter_batches(batch_format="pyarrow", batch_size=None), sink, summary,
                           scan_lib.columns(attribute))
        except ray.exceptions.RayError as exc:  # e.g. actors that cannot start, nodes lost beyond retries
            where = f"; rows so far are in {output} (run again with --resume)" if output else ""
            reason = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            return fail(f"the scan on Ray failed{where}: {reason[-1].strip()}")  # the cause, not Ray's traceback
        except scan_cli.OutputError as exc:
            failed = str(exc)
        except KeyboardInterrupt:
            return scan_cli.interrupted(stderr, summary, output)
        finally:
            failed = scan_cli.close_outputs(sink, out_file) or failed
        if failed:
            return scan_cli.output_failed(stderr, output, failed)
    finally:
        if started:
            ray.shutdown()

    scan_cli.print_summary(stderr, summary, detector, output)
    return scan_cli.exit_code(summary)


def _registry_location(registry: str | None) -> str:
    """Where the actors find the registry: the URL, or the SQLite file's absolute path."""
    from mimicry.detector.registry import default_location
    from mimicry.detector.registry_backends import is_url

    location = registry if registry is not None else default_location()
    return str(location) if is_url(location) else str(Path(location).expanduser().resolve())


def _open_sink(fmt: str, output: Path | None, resume: bool, detector, stdout: Console, every: int,
               columns: tuple[str, ...] = scan_lib.COLUMNS):
    if fmt == "parquet":
        output.parent.mkdir(parents=True, exist_ok=True)
        return scan_cli.GuardedSink(ParquetSink(output, schema=row_schema(columns == scan_lib.ATTRIBUTED_COLUMNS))), None
    return scan_cli.open_sink(fmt, output, resume, detector, stdout, every=every, columns=columns)


def write_rows(batches: Iterable[pa.Table | pa.RecordBatch], sink, summary: scan_lib.ScanSummary,
               columns: tuple[str, ...] = scan_lib.COLUMNS) -> None:
    """Write the ``columns`` of the rows of ``batches`` (of :func:`row_schema`) to ``sink`` as they
    arrive, counting them."""
    start = time.perf_counter()
    try:
        for batch in batches:
            for row in batch.select(columns).to_pylist():
                sink.write(row)
                summary.add_row(row)
    finally:
        summary.seconds = time.perf_counter() - start
