"""Benchmark: keep-alive connections that pause between requests, as behind a proxy, without retries.

``mimicry serve`` in its own process (or ``--url`` of a running one); C concurrent clients share one
httpx pool of C keep-alive connections whose own idle expiry is ``--client-keepalive`` seconds (60,
like a common load balancer). Each client posts an example image (``POST /v1/detect``), then
pauses a random 5-10 s (``--pause``), and again, until ``--requests`` are done. Nothing is
retried: a connection the server closes under a request (``httpx.ReadError``,
``RemoteProtocolError``) is counted as a reset. It reports the resets, the statuses, the
connections opened (distinct client ports) and the server log's size.

``python bench/keepalive_benchmark.py --requests 5000 --concurrency 64 --pause 5 10``; uvicorn's old
default for comparison: ``--env MIMICRY_KEEP_ALIVE_TIMEOUT_S=5``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from serve_helpers import Server  # noqa: E402



async def run(url: str, bodies: list[bytes], n: int, concurrency: int, pause: tuple[float, float],
              client_keepalive: float, seed: int) -> dict:
    rng = random.Random(seed)
    statuses: Counter = Counter()
    resets: Counter = Counter()
    ports: set[int] = set()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency,
                          keepalive_expiry=client_keepalive)
    todo = iter(range(n))
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            for i in todo:
                try:
                    r = await client.post("/v1/detect", content=bodies[i % len(bodies)],
                                          headers={"Content-Type": "image/png"})
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                    resets[type(exc).__name__] += 1
                else:
                    statuses[r.status_code] += 1
                    stream = r.extensions.get("network_stream")
                    if stream is not None:
                        ports.add(stream.get_extra_info("client_addr")[1])
                await asyncio.sleep(rng.uniform(*pause))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": n, "concurrency": concurrency, "pause_s": list(pause), "client_keepalive_s": client_keepalive,
            "seconds": round(time.monotonic() - t0, 1), "resets": sum(resets.values()), "reset_kinds": dict(resets),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "connections_opened": len(ports)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--url", help="a running server instead of starting one")
    ap.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="for the server started here")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--pause", type=float, nargs=2, default=(5.0, 10.0), metavar=("MIN", "MAX"))
    ap.add_argument("--client-keepalive", type=float, default=60.0, help="the client pool's idle expiry (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    bodies = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.png"))]
    if args.url:
        result = asyncio.run(run(args.url, bodies, args.requests, args.concurrency, tuple(args.pause),
                                 args.client_keepalive, args.seed))
    else:
        env = dict(kv.split("=", 1) for kv in args.env)
        with Server(args.model, env) as server:
            result = asyncio.run(run(server.url, bodies, args.requests, args.concurrency, tuple(args.pause),
                                     args.client_keepalive, args.seed))
            result["server_env"] = env
            result["server_log_bytes"] = server.log_bytes()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(1 if result["resets"] else 0)


if __name__ == "__main__":
    main()
