"""Benchmark: scanning folders of 1-megapixel JPEG, PNG and WebP files, end to end.

Measured in one run, per format, on the same files (1024 x 1024 drawn shapes with texture, the
images of ``bench/scan_benchmark.make_jpegs`` saved as JPEG q90, PNG and WebP q90):

* **baseline**: ``bench/scan_benchmark.bench_baseline``, a torch-eager timm model of the same
  architecture, full PIL decode, one image at a time, with torch's default threads (one per core)
  and with one thread; ratios use the faster;
* **model only**: onnxruntime on a preprocessed batch in memory (the ceiling of a scan);
* **decode alone**: ``Detector.load`` (what a scan runs per file: safe decode, JPEG draft mode,
  preprocessing, provenance) one file after another, in wall and CPU milliseconds; and through a
  thread pool and a process pool of ``--workers`` with no inference running;
* **inference alone**: ``Detector.predict_arrays`` on batches of ``--batch-size``;
* **ours, end to end**: ``Detector.stream`` (what ``mimicry scan`` runs) with each decode pool size
  of ``--workers-sweep``; then, with the best pool size, with inference run on slices of each batch
  (``--inference-slices``: decode batches stay ``--batch-size``, onnxruntime sees fewer images at a
  time, which keeps activations in the core's cache);
* **resize** alone: ``mimicry.detector.preprocess`` against the same resize in two steps (Pillow's
  ``reducing_gap``), with how far the model's input moves;
* the **shares** of decode and inference in one image's CPU time, and the end-to-end ceiling they
  allow on this many cores when both overlap perfectly.

``--models`` adds more model directories (for example the variants of ``mimicry.training.quantize``): each
is timed end to end and model-only on the same files, so its gain shows against the same baseline.

``python bench/e2e_benchmark.py --model models/default --n 200``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mimicry.detector import Detector  # noqa: E402
from mimicry.detector.decode import decode_image  # noqa: E402
from mimicry.detector.preprocess import INTERPOLATIONS, preprocess  # noqa: E402
from scan_benchmark import bench_baseline, bench_model_only, make_jpegs  # noqa: E402

FORMATS = {"jpeg": ("jpg", {"quality": 90}), "png": ("png", {}), "webp": ("webp", {"quality": 90})}


def make_folders(scratch: Path, n: int) -> dict[str, list[Path]]:
    """``n`` distinct 1024 x 1024 images per format (made once; reused from ``scratch``)."""
    jpegs = sorted(scratch.glob("jpeg/img_*.jpg"))[:n]
    if len(jpegs) < n:
        jpegs = make_jpegs(scratch / "jpeg", n)
    folders = {"jpeg": jpegs}
    for fmt in ("png", "webp"):
        ext, kw = FORMATS[fmt]
        (scratch / fmt).mkdir(exist_ok=True)
        paths = []
        for src in jpegs:
            dst = scratch / fmt / f"{src.stem}.{ext}"
            if not dst.exists():
                with Image.open(src) as im:
                    im.save(dst, **kw)
            paths.append(dst)
        folders[fmt] = paths
    return folders


def time_decode_serial(det: Detector, paths: list[Path]) -> dict:
    """``Detector.load`` one file after another: wall and CPU ms per image."""
    det.load(paths[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for p in paths:
        det.load(p)
    n = len(paths)
    return {"wall_ms": round((time.perf_counter() - t0) / n * 1000, 2),
            "cpu_ms": round((time.process_time() - c0) / n * 1000, 2)}


def resize_costs(det: Detector, paths: list[Path]) -> dict:
    """CPU ms per image of ``mimicry.detector.preprocess`` on decoded images, against the same resize done
    in two steps (Pillow's ``reducing_gap=2.0``: an integer box reduction, then bicubic), and how
    far the model's input moves (in units of one 8-bit level)."""
    cfg = det.config
    images = [decode_image(p, max_pixels=det.max_pixels, draft_size=cfg.size) for p in paths]
    resample = INTERPOLATIONS[cfg.interpolation]
    c0 = time.process_time()
    exact = [preprocess(im, cfg) for im in images]
    c1 = time.process_time()
    gapped = [preprocess(im.resize((cfg.size, cfg.size), resample, reducing_gap=2.0), cfg) for im in images]
    c2 = time.process_time()
    scale = np.asarray(cfg.std, np.float32).reshape(3, 1, 1) * 255  # back to 8-bit levels
    diff = [np.abs((a - b) * scale) for a, b in zip(exact, gapped)]
    return {"decoded_size": list(images[0].size),
            "preprocess_cpu_ms": round((c1 - c0) / len(images) * 1000, 2),
            "reducing_gap_2_cpu_ms": round((c2 - c1) / len(images) * 1000, 2),
            "reducing_gap_2_mean_abs_levels": round(float(np.mean([d.mean() for d in diff])), 3),
            "reducing_gap_2_max_abs_levels": round(float(max(d.max() for d in diff)), 1)}


_WORKER_DETECTOR: Detector | None = None


def _init_worker(model: str) -> None:
    global _WORKER_DETECTOR
    _WORKER_DETECTOR = Detector.from_dir(model, intra_op_threads=1)


def _load_in_worker(path: str) -> np.ndarray:
    return _WORKER_DETECTOR.load(path).x


def time_decode_pool(det: Detector, paths: list[Path], workers: int, processes: bool) -> float:
    """Images/s of decode alone through a thread pool (``Detector.load``) or a process pool
    (the same in worker processes, arrays sent back by pickling)."""
    if processes:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(det.bundle.path),)) as pool:
            list(pool.map(_load_in_worker, [str(p) for p in paths[:workers]]))  # start-up not timed
            t0 = time.perf_counter()
            list(pool.map(_load_in_worker, [str(p) for p in paths], chunksize=4))
            return len(paths) / (time.perf_counter() - t0)
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(det.load, paths))
        return len(paths) / (time.perf_counter() - t0)


def micro_batched(det: Detector, n: int) -> Detector:
    """A second Detector on the same session whose ``predict_arrays`` runs onnxruntime on slices of
    ``n`` images: decode still fills batches of ``--batch-size``, inference sees smaller ones."""
    other = Detector(det.bundle, det.session, max_bytes=det.max_bytes, max_pixels=det.max_pixels,
                     provenance=det.provenance)
    whole = other.predict_arrays

    def predict_arrays(x: np.ndarray) -> np.ndarray:
        if len(x) <= n:
            return whole(x)
        return np.concatenate([whole(x[i:i + n]) for i in range(0, len(x), n)])

    other.predict_arrays = predict_arrays  # the instance attribute shadows the method
    return other


def model_only(det: Detector, batch_sizes: list[int], n: int = 128) -> dict[int, float]:
    """Model-only images/s (``scan_benchmark.bench_model_only``) at each batch size."""
    return {b: round(bench_model_only(det, max(n, b), b), 1) for b in batch_sizes}


def time_stream(det: Detector, paths: list[Path], batch: int, workers: int) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in det.stream((str(p) for p in paths), batch_size=batch, workers=workers))
    return n / (time.perf_counter() - t0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/default"))
    p.add_argument("--models", type=Path, nargs="*", default=[], help="more model directories, timed the same way")
    p.add_argument("--n", type=int, default=200, help="distinct 1-MP images per format")
    p.add_argument("--baseline-n", type=int, default=60, help="images per format for the (slow) baseline")
    p.add_argument("--formats", nargs="+", choices=tuple(FORMATS), default=list(FORMATS))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode pool size for the pool figures")
    p.add_argument("--workers-sweep", type=int, nargs="+", default=None,
                   help="decode pool sizes for the end-to-end figures (default: 1, cores, 2 x cores)")
    p.add_argument("--inference-slices", type=int, nargs="*", default=[1, 4],
                   help="also scan with onnxruntime run on slices of this many images of each batch")
    p.add_argument("--scratch", type=Path, default=None, help="where the image folders are made (kept)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    args.workers_sweep = args.workers_sweep or sorted({1, cores, 2 * cores})
    return args


def main(args: argparse.Namespace) -> dict:
    cores = os.cpu_count() or 1
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="mimicry-e2e-"))
    folders = make_folders(scratch, args.n)
    det = Detector.from_dir(args.model)
    card = det.bundle.card
    result: dict = {
        "cores": cores,
        "model": f"{card['name']} {card['version']} ({card['backbone']}, {card['input']['size']} px)",
        "files": f"{args.n} per format, 1024x1024: " + ", ".join(
            f"{fmt} {np.mean([p.stat().st_size for p in folders[fmt]]) / 1e3:.0f} KB avg" for fmt in args.formats),
        "batch_size": args.batch_size,
        "load_avg_start": round(os.getloadavg()[0], 2),
    }
    # Model-only at the start, next to each format and at the end: the spread shows how much the
    # machine's load moved during the run; each format's ratios use the figure taken beside it.
    # Each is taken at the scan's batch size and at each inference slice, and a scan is held
    # against the best of them: the ceiling it could reach.
    inference_batches = sorted({args.batch_size, *[n for n in args.inference_slices if n < args.batch_size]})
    result["model_only_img_s"] = model_only(det, inference_batches)
    print(f"model only: {result['model_only_img_s']} img/s", file=sys.stderr)
    result["formats"] = {}
    for fmt in args.formats:
        paths = folders[fmt]
        row: dict = {"decode_serial": time_decode_serial(det, paths)}
        row["resize"] = resize_costs(det, paths[:50])
        row["decode_threads_img_s"] = round(time_decode_pool(det, paths, args.workers, processes=False), 1)
        row["decode_processes_img_s"] = round(time_decode_pool(det, paths, args.workers, processes=True), 1)
        time_stream(det, paths[:args.batch_size], args.batch_size, args.workers)  # warm-up
        # Model-only again next to each format's scan: on a shared machine the load drifts.
        row["model_only_img_s_by_batch"] = model_only(det, inference_batches)
        best_only = max(row["model_only_img_s_by_batch"].values())
        infer_ms = 1000 / best_only
        row["ours_img_s_by_workers"] = {w: round(time_stream(det, paths, args.batch_size, w), 1)
                                        for w in args.workers_sweep}
        best_w, ours_plain = max(row["ours_img_s_by_workers"].items(), key=lambda kv: kv[1])
        row["ours_workers"] = best_w
        row["ours_img_s_by_inference_slice"] = {
            n: round(time_stream(micro_batched(det, n), paths, args.batch_size, best_w), 1)
            for n in inference_batches if n < args.batch_size}
        row["ours_img_s_by_inference_slice"][args.batch_size] = ours_plain
        best_slice, ours = max(row["ours_img_s_by_inference_slice"].items(), key=lambda kv: kv[1])
        row["ours_img_s"], row["ours_inference_slice"] = ours, best_slice
        # torch's default (a thread per core) and one thread: on a busy machine the default can be
        # far slower (its OpenMP threads wait for each other); the ratios use the faster of the two.
        row["baseline_img_s_by_torch_threads"] = {
            t: round(bench_baseline(paths[:args.baseline_n], card, threads=t), 1) for t in sorted({cores, 1})}
        row["baseline_img_s"] = max(row["baseline_img_s_by_torch_threads"].values())
        decode_cpu = row["decode_serial"]["cpu_ms"]
        infer_cpu = infer_ms * cores  # core-ms per image: inference uses every core
        row["decode_share"] = round(decode_cpu / (decode_cpu + infer_cpu), 3)
        row["inference_share"] = round(infer_cpu / (decode_cpu + infer_cpu), 3)
        row["ceiling_img_s"] = round(cores * 1000 / (decode_cpu + infer_cpu), 1)
        row["ours_vs_baseline"] = round(ours / row["baseline_img_s"], 2)
        row["ours_vs_model_only"] = round(ours / best_only, 3)
        row["ours_as_scan_runs_today_vs_model_only"] = round(ours_plain / best_only, 3)
        row["ours_vs_ceiling"] = round(ours / row["ceiling_img_s"], 3)
        row["load_avg"] = round(os.getloadavg()[0], 2)
        result["formats"][fmt] = row
        print(f"{fmt}: {json.dumps(row)}", file=sys.stderr)
    result["model_only_img_s_end"] = model_only(det, inference_batches)
    result["other_models"] = {}
    for model_dir in args.models:
        other = Detector.from_dir(model_dir)
        entry = {}
        for fmt in args.formats:
            only = max(model_only(other, inference_batches).values())
            w = result["formats"][fmt]["ours_workers"]
            n = result["formats"][fmt]["ours_inference_slice"]
            ours = time_stream(micro_batched(other, n), folders[fmt], args.batch_size, w)
            entry[fmt] = {"ours_img_s": round(ours, 1), "workers": w, "inference_slice": n,
                          "model_only_img_s": round(only, 1),
                          "vs_baseline": round(ours / result["formats"][fmt]["baseline_img_s"], 2),
                          "vs_own_model_only": round(ours / only, 3)}
        result["other_models"][str(model_dir)] = entry
        print(f"{model_dir}: {json.dumps(entry)}", file=sys.stderr)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    arguments = parse_args()
    figures = main(arguments)
    print(json.dumps(figures, indent=2))
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2))
