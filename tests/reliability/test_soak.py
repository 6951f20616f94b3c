"""Load and soak on loopback, bounded in count and time: 5,000 requests at concurrency 64."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
from reliability_fixtures import ROOT, rss_mb

REQUESTS = 5000
CONCURRENCY = 64
# Idle RSS after the run against idle RSS after the warm-up. glibc's arenas move it by some tens of MB either way
# (-5 to +22 MB over four runs at about 160 MB on 2 cores, 2026-12-04; one of them +14%), so the bound is 10% or
# 32 MB, whichever is larger: a leak of even the smallest thing a request makes, an example decoded (128 x 128 x 3,
# 48 KB), would add 240 MB over the run.
GROWTH_MB = 32


async def _fire(url: str, bodies: list[bytes], n: int, concurrency: int, statuses: Counter) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        todo = iter(range(n))

        async def worker():
            for i in todo:
                # No retry: a keep-alive connection closed under a request (httpx.ReadError) fails the test.
                r = await client.post("/v1/detect", content=bodies[i % len(bodies)],
                                      headers={"Content-Type": "image/png"})
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    assert r.json()["label"] in ("human", "uncertain", "ai-mimicry")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def test_5000_requests_at_concurrency_64_without_errors_or_growth(server):
    url, proc = server
    bodies = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.png"))]
    bodies.append(b"not an image")  # an expected 415 in the mix
    warm = Counter()
    asyncio.run(_fire(url, bodies, 500, CONCURRENCY, warm))
    time.sleep(5)  # idle RSS on both sides: the service gives freed memory back once idle (IDLE_TRIM_S)
    rss_warm = rss_mb(proc.pid)
    statuses = Counter()
    t0 = time.monotonic()
    asyncio.run(_fire(url, bodies, REQUESTS, CONCURRENCY, statuses))
    elapsed = time.monotonic() - t0
    time.sleep(5)
    rss_end = rss_mb(proc.pid)
    expected_415 = sum(1 for i in range(REQUESTS) if i % len(bodies) == len(bodies) - 1)
    print(f"\nsoak: {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s "
          f"({REQUESTS / elapsed:.0f}/s); statuses {dict(statuses)}; server RSS {rss_warm:.1f} -> {rss_end:.1f} MB")
    assert statuses == {200: REQUESTS - expected_415, 415: expected_415}, statuses
    growth = rss_end - rss_warm
    assert growth < max(GROWTH_MB, 0.10 * rss_warm), f"server RSS grew from {rss_warm:.1f} to {rss_end:.1f} MB"
    assert httpx.get(url + "/readyz").status_code == 200
