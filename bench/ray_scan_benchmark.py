"""Benchmark: ``mimicry scan --engine ray`` against the local engine on one node.

Measured in one run, on the same files and the same machine, both engines writing JSONL:
* **local engine** (the baseline): ``mimicry.detector.scan.run``, as ``mimicry scan DIR -o rows.jsonl``,
  measured before and after the Ray runs (the mean is the baseline: on a shared machine the load
  drifts, and the spread shows by how much);
* **ray engine, end to end**: ``mimicry.ray_scan.run`` on a local Ray cluster already started,
  counting the actor start (each actor loads the model shipped through the object store);
* **ray engine, steady state**: the rows after the first batch, over the time from the first batch
  to the last: what a node sustains on a backlog where start-up is negligible;
* **driver**: rows/s one driver process writes (JSONL, Parquet) and counts, the ceiling of a
  single scan whatever the cluster's size.

The figures say what one node gives; the README's "Scan 100 million images on a Ray cluster"
does the arithmetic for a cluster from them. Files are 1-MP JPEGs made by
``bench/scan_benchmark.make_jpegs`` (``--distinct`` of them, hard-linked up to ``--n`` paths, so
every path is decoded but the disk stays small).

``python bench/ray_scan_benchmark.py --model models/default --n 1000 --distinct 300``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from scan_benchmark import make_jpegs  # noqa: E402

from mimicry.detector import scan as scan_lib  # noqa: E402
from mimicry import ray_scan  # noqa: E402


def linked_folder(files: list[Path], n: int, folder: Path) -> Path:
    """``folder`` with ``n`` hard links cycling over ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = folder / f"l_{i:06d}.jpg"
        if not p.exists():
            os.link(files[i % len(files)], p)
    return folder


def bench_local(folder: Path, model: Path, out: Path, batch: int, workers: int) -> tuple[float, int]:
    """Images/s and exit code of the local engine, end to end (model load included)."""
    t0 = time.perf_counter()
    code = scan_lib.run([str(folder)], output=out, force=True, model=model, batch_size=batch, workers=workers,
                        stderr=Console(stderr=True, quiet=True))
    n = sum(1 for _ in open(out, encoding="utf-8"))
    return n / (time.perf_counter() - t0), code


def bench_ray(folder: Path, model: Path, out: Path, opts: ray_scan.RayOptions) -> tuple[float, int]:
    """Images/s and exit code of the ray engine, end to end on a running cluster."""
    t0 = time.perf_counter()
    code = ray_scan.run([str(folder)], output=out, force=True, model=model, options=opts,
                        stderr=Console(stderr=True, quiet=True))
    n = sum(1 for _ in open(out, encoding="utf-8"))
    return n / (time.perf_counter() - t0), code


def bench_ray_steady(folder: Path, model: Path, opts: ray_scan.RayOptions) -> dict:
    """The same pipeline, timed batch by batch: start-up vs. the rate after the first batch."""
    sources = list(scan_lib.iter_inputs([str(folder)]))
    t0 = time.perf_counter()
    ds = ray_scan.build_dataset(sources, model, opts)
    first_rows, first_t, rows = 0, None, 0
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        rows += batch.num_rows
        if first_t is None:
            first_t, first_rows = time.perf_counter(), rows
    end = time.perf_counter()
    return {"rows": rows, "seconds_to_first_rows": round(first_t - t0, 2),
            "steady_img_s": round((rows - first_rows) / (end - first_t), 1)}


def bench_driver(rows_file: Path, n: int, scratch: Path) -> dict:
    """Rows/s one driver writes (JSONL and Parquet) and counts, as ``ray_scan`` does with the rows
    that come back: the ceiling of a single driver, whatever the cluster's size."""
    rows = [json.loads(line) for line in open(rows_file, encoding="utf-8")]
    table = pa.Table.from_pylist((rows * (n // len(rows) + 1))[:n], schema=ray_scan.ROW_SCHEMA)
    batches = table.to_batches(max_chunksize=64)
    result = {}
    for fmt in ("jsonl", "parquet"):
        out = scratch / f"driver.{fmt}"
        f = open(out, "w", encoding="utf-8") if fmt == "jsonl" else None
        sink = scan_lib.JsonlSink(f) if f else ray_scan.ParquetSink(out)
        t0 = time.perf_counter()
        ray_scan.write_rows(batches, sink, scan_lib.ScanSummary())
        sink.close()
        result[f"driver_{fmt}_rows_s"] = round(n / (time.perf_counter() - t0))
        if f:
            f.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/default"))
    p.add_argument("--n", type=int, default=1000, help="paths scanned by each engine")
    p.add_argument("--distinct", type=int, default=300, help="distinct 1-MP JPEGs behind the paths")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local engine's decode threads")
    p.add_argument("--actors", type=int, default=None, help="ray actors [default: one per CPU]")
    p.add_argument("--driver-rows", type=int, default=200_000, help="rows for the driver's write rate")
    p.add_argument("--scratch", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="mimicry-ray-bench-"))
    files = sorted(scratch.glob("jpeg/img_*.jpg"))
    if len(files) < args.distinct:
        files = make_jpegs(scratch / "jpeg", args.distinct)
    folder = linked_folder(files[: args.distinct], args.n, scratch / f"links_{args.n}")

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING")
    cluster_start = time.perf_counter() - t0
    cpus = int(ray.cluster_resources().get("CPU", 0))
    opts = ray_scan.RayOptions(actors=args.actors or cpus, batch_size=args.batch_size)
    try:
        for f in files[: args.distinct]:  # into the page cache, for both engines alike
            f.read_bytes()
        local, local_code = bench_local(folder, args.model, scratch / "local.jsonl", args.batch_size, args.workers)
        ray_e2e, ray_code = bench_ray(folder, args.model, scratch / "ray.jsonl", opts)
        steady = bench_ray_steady(folder, args.model, opts)
        # Again after Ray: on a shared machine the load drifts; the baseline is the mean of both.
        local_after, _ = bench_local(folder, args.model, scratch / "local2.jsonl", args.batch_size, args.workers)
    finally:
        ray.shutdown()
    baseline = (local + local_after) / 2
    driver = bench_driver(scratch / "ray.jsonl", args.driver_rows, scratch)
    same = (sorted(open(scratch / "local.jsonl", encoding="utf-8"))
            == sorted(open(scratch / "ray.jsonl", encoding="utf-8")))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "files": f"{args.n} paths over {args.distinct} distinct 1024x1024 q90 JPEGs",
        "ray_cpus": cpus, "ray_actors": opts.actors, "batch_size": args.batch_size,
        "ray_cluster_start_s": round(cluster_start, 1),
        "local_img_s_before_after": [round(local, 1), round(local_after, 1)],
        "local_img_s": round(baseline, 1),
        "ray_end_to_end_img_s": round(ray_e2e, 1),
        "ray_end_to_end_vs_local": round(ray_e2e / baseline, 2),
        "ray_seconds_to_first_rows": steady["seconds_to_first_rows"],
        "ray_steady_img_s": steady["steady_img_s"],
        "ray_steady_vs_local": round(steady["steady_img_s"] / baseline, 2),
        **driver, "driver_rows": args.driver_rows,
        "rows_identical": same, "exit_codes": [local_code, ray_code],
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
