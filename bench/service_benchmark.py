"""Benchmark: the HTTP service under concurrent load, against the model-only ceiling.

Measured in one run, on loopback, on the same machine:
* **model only**: onnxruntime on preprocessed batches already in memory (batches of 1, 4 and 16),
  in this process, before the server starts: the best of them is the ceiling the service is
  compared with;
* **the service**: ``mimicry serve`` in its own process; a load generator in this process posts
  1-megapixel JPEGs (raw ``image/jpeg`` bodies, keep-alive connections, httpx) from C concurrent
  clients, for each concurrency and for batching on (``--batch-max-size``, default 4) and off
  (``--batch-max-size 1``). It reports throughput, p50/p99 latency and the status codes.

The load generator shares the CPU with the server (one machine), so the figures understate what
a server with its cores to itself does; the client's own CPU time is reported so that can be judged.

``python bench/service_benchmark.py --model models/default --concurrency 1 8 32 128 --requests 400``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scan_benchmark import make_jpegs  # noqa: E402
from serve_helpers import Server  # noqa: E402

from mimicry.detector import Detector  # noqa: E402


def model_only(model: Path, bodies: list[bytes], batches=(1, 4, 16), seconds: float = 4.0) -> dict[int, float]:
    """onnxruntime alone on preprocessed inputs in memory, images/s by batch size."""
    det = Detector.from_dir(model)
    rates = {}
    for batch in batches:
        x = np.stack([det.load_input(bodies[i % len(bodies)]) for i in range(batch)])
        det.predict_arrays(x)  # warm up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            det.predict_arrays(x)
            n += len(x)
        rates[batch] = n / (time.perf_counter() - t0)
    return rates


async def load(url: str, bodies: list[bytes], concurrency: int, total: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    statuses: Counter = Counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        next_i = 0

        async def worker():
            nonlocal next_i
            while next_i < total:
                i = next_i
                next_i += 1
                t0 = time.perf_counter()
                r = await client.post("/v1/detect", content=bodies[i % len(bodies)],
                                      headers={"Content-Type": "image/jpeg"})
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] += 1

        # warm-up: one request per connection
        await asyncio.gather(*(client.get("/healthz") for _ in range(concurrency)))
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = np.asarray(latencies) * 1000
    return {"concurrency": concurrency, "requests": total, "seconds": round(wall, 2),
            "images_per_s": round(total / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "statuses": dict(statuses),
            "client_cpu_s": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32])
    ap.add_argument("--requests", type=int, default=400, help="requests per (mode, concurrency)")
    ap.add_argument("--images", type=int, default=32, help="distinct 1-MP JPEGs cycled through")
    ap.add_argument("--modes", nargs="+", default=["on", "off"], choices=["on", "off"])
    ap.add_argument("--batch-max-size", type=int, default=4)
    ap.add_argument("--wait-ms", type=float, default=2.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bodies = [p.read_bytes() for p in make_jpegs(Path(tmp), args.images)]
    rates = model_only(args.model, bodies)
    best = max(rates, key=rates.get)
    ceiling = rates[best]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"JPEG bodies ~{np.mean([len(b) for b in bodies]) / 1024:.0f} KiB")
    print("model only (onnxruntime, in memory), images/s by batch: "
          + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()) + f"; the ceiling used: batch {best}")
    results = {"model_only_images_per_s": {str(b): round(r, 1) for b, r in rates.items()},
               "ceiling_images_per_s": round(ceiling, 1), "runs": []}
    for mode in args.modes:
        size = args.batch_max_size if mode == "on" else 1
        env = {"MIMICRY_BATCH_MAX_SIZE": str(size), "MIMICRY_BATCH_MAX_WAIT_MS": str(args.wait_ms),
               "MIMICRY_QUEUE_MAX": str(max(256, 2 * max(args.concurrency)))}
        with Server(str(args.model), env) as srv:
            for c in args.concurrency:
                r = asyncio.run(load(srv.url, bodies, c, args.requests))
                r.update(batching=mode, batch_max_size=size, fraction_of_model_only=round(r["images_per_s"] / ceiling, 3))
                results["runs"].append(r)
                print(f"batching {mode:3} c={c:4}: {r['images_per_s']:6.1f} img/s "
                      f"({100 * r['fraction_of_model_only']:.0f}% of model-only), p50 {r['p50_ms']} ms, "
                      f"p99 {r['p99_ms']} ms, statuses {r['statuses']}, client CPU {r['client_cpu_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
