"""Benchmark: scanning a folder of 1-megapixel JPEGs, ours against the usual demo-script baseline.

Measured in one run, on the same files and the same machine:
* **baseline**: a torch-eager timm model of the same architecture, a full PIL decode
  (``Image.open(p).convert("RGB")``), resize, one image at a time, as public detectors' demo
  scripts do;
* **model only**: onnxruntime on preprocessed batches already in memory (the ceiling);
* **ours, end to end**: ``Detector.stream`` (what ``mimicry scan`` runs): safe decode with JPEG
  draft mode in a thread pool, batched onnxruntime, calibration.

With ``--memory N`` it also scans N paths (hard links to the same files, so the disk stays small)
and samples the process RSS every 500 images, to show that memory stays flat.

``python bench/scan_benchmark.py --model models/default --n 300``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimicry.detector import Detector  # noqa: E402


def make_jpegs(folder: Path, n: int, side: int = 1024, seed: int = 0) -> list[Path]:
    """``n`` distinct ``side`` x ``side`` JPEGs (quality 90) of drawn shapes with texture."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        im = Image.new("RGB", (side, side), tuple(int(c) for c in rng.integers(180, 255, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(12):
            x0, y0 = rng.integers(0, side - 100, 2)
            x1, y1 = x0 + rng.integers(50, side // 2), y0 + rng.integers(50, side // 2)
            d.ellipse([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 255, 3)), outline="black", width=4)
        noise = rng.normal(0, 6, (side, side, 3))
        im = Image.fromarray(np.clip(np.asarray(im, np.float32) + noise, 0, 255).astype(np.uint8))
        im = im.filter(ImageFilter.SMOOTH)
        p = folder / f"img_{i:05d}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_baseline(paths: list[Path], card: dict, threads: int | None = None) -> float:
    """torch eager, full decode, one image at a time, ``threads`` torch threads (default: one per
    core, torch's own default); images/s."""
    import timm
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    model = timm.create_model(card["backbone"], pretrained=False, num_classes=1).eval()
    size = card["input"]["size"]
    mean = torch.tensor(card["input"]["mean"]).view(3, 1, 1)
    std = torch.tensor(card["input"]["std"]).view(3, 1, 1)
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))  # warm-up: torch sets up its kernels on the first call
    t0 = time.perf_counter()
    with torch.no_grad():
        for p in paths:
            im = Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            x = torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)
            model(((x - mean) / std).unsqueeze(0))
    return len(paths) / (time.perf_counter() - t0)


def bench_model_only(det: Detector, n: int, batch: int) -> float:
    size = det.config.size
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    det.predict_arrays(x)  # warm-up
    reps = max(1, n // batch)
    t0 = time.perf_counter()
    for _ in range(reps):
        det.predict_arrays(x)
    return reps * batch / (time.perf_counter() - t0)


def bench_ours(det: Detector, paths: list[Path], batch: int, workers: int) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in det.stream((str(p) for p in paths), batch_size=batch, workers=workers))
    return n / (time.perf_counter() - t0)


def bench_memory(det: Detector, files: list[Path], n: int, batch: int, workers: int, scratch: Path) -> list[tuple[int, float]]:
    links = scratch / "links"
    links.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        p = links / f"l_{i:06d}.jpg"
        if not p.exists():
            os.link(files[i % len(files)], p)
        paths.append(str(p))
    samples = []
    for i, _ in enumerate(det.stream(iter(paths), batch_size=batch, workers=workers), 1):
        if i % 500 == 0 or i == n:
            samples.append((i, round(rss_mb(), 1)))
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/default"))
    p.add_argument("--n", type=int, default=300, help="distinct 1-MP JPEGs")
    p.add_argument("--baseline-n", type=int, default=100, help="images for the (slow) baseline")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--memory", type=int, default=0, help="also scan this many paths and sample RSS")
    p.add_argument("--scratch", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="mimicry-bench-"))
    files = sorted(scratch.glob("jpeg/img_*.jpg"))
    if len(files) < args.n:
        files = make_jpegs(scratch / "jpeg", args.n)
    files = files[: args.n]
    det = Detector.from_dir(args.model)
    card = det.bundle.card
    bench_ours(det, files[:16], args.batch_size, args.workers)  # warm-up: page cache, thread pool
    ours = bench_ours(det, files, args.batch_size, args.workers)
    model_only = bench_model_only(det, 256, args.batch_size)
    baseline = bench_baseline(files[: args.baseline_n], card)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": f"{card['name']} {card['version']} ({card['backbone']}, {card['input']['size']} px)",
        "files": f"{args.n} JPEGs 1024x1024 q90",
        "baseline_img_s": round(baseline, 1),
        "model_only_img_s": round(model_only, 1),
        "ours_img_s": round(ours, 1),
        "speedup_vs_baseline": round(ours / baseline, 2),
        "ours_share_of_model_only": round(ours / model_only, 3),
        "batch_size": args.batch_size,
        "workers": args.workers,
    }
    if args.memory:
        samples = bench_memory(det, files, args.memory, args.batch_size, args.workers, scratch)
        result["memory_rss_mb"] = samples
        first = samples[1][1] if len(samples) > 1 else samples[0][1]  # after warm-up
        result["rss_growth_after_first_1000"] = round(samples[-1][1] - first, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
