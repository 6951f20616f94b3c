"""Benchmark: normal detections while the service is being abused, against the same detections alone.

``mimicry serve`` runs in its own process (default settings but for the paths, one onnxruntime
thread as the tests use, and an API key for enrolment). A load generator in this process then runs, for
``--seconds`` each, two phases:

1. **baseline**: a stream of normal detections (one 512 x 512 example PNG at a time, ``--rate`` per
   second, keep-alive) and nothing else;
2. **abuse**: the same stream while, at once,
   - heatmaps at the largest grid the server allows (``/v1/explain?grid=16``), ``--explainers`` clients back
     to back;
   - batches of four 39.7-megapixel PNGs (38 KB each on the wire, each about a second of decoding),
     ``--bombers`` clients back to back;
   - ``--slow`` connections that send half a request's headers and then a byte now and then;
   - enrolments of 8 one-megapixel JPEGs at a time, one client back to back.

With ``--rounds 2`` the abuse phase runs twice on the same server: memory kept for reuse (onnxruntime's
arenas sized for the batches the load used, the registry's index) shows once, a leak grows again.

It reports the normal detections' latency (p50, p99, max) and statuses in both phases, the abusers'
statuses, and the server's RSS (before, peak, at the end of the abuse, and 10 s after it). The goals
of issue 17: p99 of normal detections <= 1 s and RSS < 1.5 GB during the abuse, back within 20 % of
its start after it.

The load generator shares the CPU with the server, so figures are pessimistic for a server with the
machine to itself.

``python bench/abuse_benchmark.py --seconds 60 --json runs/abuse_benchmark.json``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from serve_helpers import Server, rss_mb  # noqa: E402

MODEL = ROOT / "models" / "default"
EXAMPLE = sorted((ROOT / "examples").glob("*.png"))[0]


def big_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6300, 6300), (200, 180, 150)).save(buf, "PNG")
    return buf.getvalue()


def photo_jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        small = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((1152, 864), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


async def normal_stream(url: str, data: bytes, rate: float, stop: asyncio.Event, lat: list, statuses: Counter):
    async with httpx.AsyncClient(timeout=60) as client:
        period = 1.0 / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/v1/detect", content=data, headers={"Content-Type": "image/png"})
                statuses[r.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            lat.append(time.perf_counter() - t0)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def loop_posts(make_request, stop: asyncio.Event, statuses: Counter):
    async with httpx.AsyncClient(timeout=120) as client:
        while not stop.is_set():
            try:
                r = await make_request(client)
                statuses[r.status_code] += 1
                if r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1


async def slow_headers(port: int, n: int, stop: asyncio.Event, stats: Counter):
    """Connections that never finish their headers; reopened when the server closes them."""
    async def one():
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                stats["connect_failed"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["opened"] += 1
            try:
                writer.write(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
                await writer.drain()
                while not stop.is_set():
                    await asyncio.sleep(2)
                    writer.write(b"X-a: b\r\n")
                    await writer.drain()
                    if reader.at_eof():
                        break
            except (OSError, ConnectionError):
                stats["closed_by_server"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(n)))


async def phase(url: str, port: int, pid: int, seconds: float, args, abuse: bool, key: str) -> dict:
    stop = asyncio.Event()
    lat: list[float] = []
    normal: Counter = Counter()
    explain_st: Counter = Counter()
    bomb_st: Counter = Counter()
    enrol_st: Counter = Counter()
    slow_st: Counter = Counter()
    example = EXAMPLE.read_bytes()
    tasks = [asyncio.create_task(normal_stream(url, example, args.rate, stop, lat, normal))]
    if abuse:
        bomb = big_png()
        jpegs = photo_jpegs(8)
        files = [("files", ("big.png", bomb, "image/png"))] * 4

        def explain(c):
            return c.post(url + "/v1/explain?grid=16", content=example, headers={"Content-Type": "image/png"})

        def bomb_batch(c):
            return c.post(url + "/v1/detect/batch", files=files)

        def enrol(c):
            return c.post(url + "/v1/artists/Abuse%20Test/works", headers={"X-API-Key": key},
                          files=[("files", (f"{i}.jpg", j, "image/jpeg")) for i, j in enumerate(jpegs)])

        kinds = set(args.abusers)
        if "explain" in kinds:
            tasks += [asyncio.create_task(loop_posts(explain, stop, explain_st)) for _ in range(args.explainers)]
        if "bombs" in kinds:
            tasks += [asyncio.create_task(loop_posts(bomb_batch, stop, bomb_st)) for _ in range(args.bombers)]
        if "enrol" in kinds:
            tasks += [asyncio.create_task(loop_posts(enrol, stop, enrol_st))]
        if "slow" in kinds:
            tasks += [asyncio.create_task(slow_headers(port, args.slow, stop, slow_st))]
    rss = [rss_mb(pid)]
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        await asyncio.sleep(0.5)
        rss.append(rss_mb(pid))
    stop.set()
    await asyncio.wait(tasks, timeout=180)
    rss.append(rss_mb(pid))
    out = {"normal": {"n": len(lat), "p50_s": pct(lat, 50), "p99_s": pct(lat, 99),
                      "max_s": round(max(lat), 4) if lat else None, "statuses": dict(normal)},
           "rss_mb": {"start": round(rss[0], 1), "peak": round(max(rss), 1), "end": round(rss[-1], 1)}}
    if abuse:
        out["abusers"] = {"explain_grid16": dict(explain_st), "batches_of_4x40MP": dict(bomb_st),
                          "enrolments_8x1MP": dict(enrol_st), "slow_header_connections": dict(slow_st)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--rate", type=float, default=10, help="normal detections per second")
    p.add_argument("--explainers", type=int, default=2)
    p.add_argument("--bombers", type=int, default=2)
    p.add_argument("--slow", type=int, default=200, help="slow-header connections")
    p.add_argument("--abusers", nargs="+", default=["explain", "bombs", "enrol", "slow"],
                   choices=["explain", "bombs", "enrol", "slow"], help="which kinds of abuse to run (default all)")
    p.add_argument("--rounds", type=int, default=1, help="abuse phases one after the other")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    with Server(str(MODEL), {"MIMICRY_INTRA_OP_THREADS": "1"}) as server:
        env = {**os.environ, "MIMICRY_HOME": server.tmp.name, "MIMICRY_KEYS_DB": os.path.join(server.tmp.name, "keys.sqlite3")}
        key = subprocess.run([sys.executable, "-m", "mimicry", "keys", "create", "abuse-bench", "--scope", "enrol"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        url, pid = server.url, server.proc.pid
        httpx.post(url + "/v1/artists", json={"name": "Abuse Test"}, headers={"X-API-Key": key})
        for _ in range(20):  # warm-up
            httpx.post(url + "/v1/detect", content=EXAMPLE.read_bytes(), headers={"Content-Type": "image/png"})
        result = {"seconds": args.seconds, "rate": args.rate, "cpus": os.cpu_count(),
                  "baseline": asyncio.run(phase(url, server.port, pid, args.seconds, args, False, key))}
        for r in range(args.rounds):  # a second round tells memory kept for reuse from memory leaked
            name = "abuse" if r == 0 else f"abuse_round_{r + 1}"
            result[name] = asyncio.run(phase(url, server.port, pid, args.seconds, args, True, key))
            time.sleep(10)
            result[name]["rss_mb"]["10s_after"] = round(rss_mb(pid), 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
