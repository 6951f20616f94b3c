"""Benchmark: attribution over a large registry (default 100,000 works) against a naive baseline.

The registry's database is filled with synthetic unit embeddings (artists as clusters: a centre plus
noise, so that rows are not all alike), written straight into the registry's tables: the matching
cost depends on the number and size of embeddings, not on how they were made. Then, in one run:

* ``cached``: :meth:`Registry.match` as the service calls it, with the encoder card's aggregate: the
  in-memory matrices (built once); for ``centroid``, one product with the artists' mean embeddings,
  ``argpartition`` top-k, then the nearest works of those k artists only; for ``max``, one product
  with every work and a per-artist maximum (``np.maximum.reduceat``);
* ``naive``: what one would write first: every query reads all embeddings from SQLite, decodes them,
  scores the artists the same way and ranks them with a full sort;
* the cost of rebuilding the cache after a change, and a batch of queries at once.

``python bench/registry_benchmark.py --works 100000 --artists 5000 --queries 200``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimicry.detector.registry import Registry  # noqa: E402
from mimicry.detector.style import embedding_dim  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--works", type=int, default=100_000)
    p.add_argument("--artists", type=int, default=5_000)
    p.add_argument("--dim", type=int, default=None, help="embedding size (default: the bundled encoder's)")
    p.add_argument("--encoder", type=Path, default=Path("models/style-encoder"))
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--naive-queries", type=int, default=10)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--aggregate", choices=("max", "centroid"), default=None,
                   help="how artists are scored (default: the bundled encoder's)")
    p.add_argument("--db", type=Path, default=None, help="database file (default: a temporary one)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def encoder_card(path: Path) -> dict:
    return json.loads((path / "model.json").read_text())


def fill(db: Path, works: int, artists: int, dim: int, seed: int) -> np.ndarray:
    """Write ``works`` synthetic works spread over ``artists`` artists; return the artist centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((artists, dim)).astype(np.float32)
    with Registry.open(db):
        pass  # creates the schema
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO artists (id, name, consent, created_at) VALUES (?, ?, '', '2026-01-01')",
                     [(i + 1, f"artist {i:05d}") for i in range(artists)])
    owner = rng.integers(0, artists, works)
    for start in range(0, works, 10_000):
        o = owner[start:start + 10_000]
        e = centres[o] + 1.5 * rng.standard_normal((len(o), dim)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        conn.executemany(
            "INSERT INTO works (artist_id, sha256, embedding, thumbnail, created_at, source) "
            "VALUES (?, ?, ?, x'', '2026-01-01', ?)",
            [(int(a) + 1, f"{start + i:064x}", row.astype("<f4").tobytes(), f"work_{start + i}.png")
             for i, (a, row) in enumerate(zip(o, e))])
    conn.execute("COMMIT")
    conn.close()
    return centres


def naive_match(db: Path, q: np.ndarray, k: int, aggregate: str) -> list[tuple[str, float]]:
    """The baseline: read everything from SQLite for every query, full sort."""
    conn = sqlite3.connect(str(db))
    rows = conn.execute("SELECT a.name, w.embedding FROM works w JOIN artists a ON a.id = w.artist_id").fetchall()
    conn.close()
    names = np.array([r[0] for r in rows])
    m = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
    if aggregate == "centroid":
        uniq, inverse = np.unique(names, return_inverse=True)
        sums = np.zeros((len(uniq), m.shape[1]))
        np.add.at(sums, inverse, m)
        scores = (sums / np.linalg.norm(sums, axis=1, keepdims=True)) @ q
        return [(str(uniq[i]), float(scores[i])) for i in np.argsort(-scores)[:k]]
    sims = m @ q
    best: dict[str, float] = {}
    for i in np.argsort(-sims):  # full sort, then the first row seen per artist is its best
        best.setdefault(str(names[i]), float(sims[i]))
        if len(best) >= k:
            break
    return list(best.items())[:k]


def timed(fn, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and CPU milliseconds (this process, all threads) of ``fn(i)`` for ``i < n``."""
    wall, cpu = [], []
    for i in range(n):
        t, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return np.array(wall), np.array(cpu)


def main(args: argparse.Namespace) -> dict:
    card = encoder_card(args.encoder)
    dim = args.dim or embedding_dim(card)
    aggregate = args.aggregate or card["similarity"]["aggregate"]
    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory()
        db = Path(tmp.name) / "bench.sqlite3"
    else:
        db = args.db
        db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    centres = fill(db, args.works, args.artists, dim, args.seed)
    fill_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed + 1)
    truth = rng.integers(0, args.artists, args.queries)
    queries = centres[truth] + 1.5 * rng.standard_normal((args.queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    reg = Registry.open(db, aggregate=aggregate)
    t = time.perf_counter()
    reg.match(queries[0], k=args.k)  # builds the in-memory matrix
    build_ms = (time.perf_counter() - t) * 1000
    load_before = os.getloadavg()[0]
    cached, cached_cpu = timed(lambda i: reg.match(queries[i], k=args.k), args.queries)
    t = time.perf_counter()
    batch = reg.match_batch(queries, k=args.k)
    batch_ms_per_query = (time.perf_counter() - t) * 1000 / args.queries
    naive, naive_cpu = timed(lambda i: naive_match(db, queries[i], args.k, aggregate), args.naive_queries)
    # The two must agree on the top artist (same data, same definition of an artist's score).
    agree = np.mean([naive_match(db, queries[i], 1, aggregate)[0][0] == reg.match(queries[i], k=1)[0].artist
                     for i in range(min(5, args.queries))])
    top1 = np.mean([b[0].artist == f"artist {t:05d}" for b, t in zip(batch, truth)])
    matrix_mb = args.works * dim * 4 / 2**20
    reg.close()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"{platform.system()} {platform.release()}, Python {platform.python_version()}, numpy {np.__version__}",
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "load_average_1min": round(load_before, 2),
        "works": args.works, "artists": args.artists, "dim": dim, "k": args.k, "aggregate": aggregate,
        "fill_s": round(fill_s, 1), "matrix_mb": round(matrix_mb, 1),
        "cache_build_ms": round(build_ms, 1),
        "cached_ms_median": round(float(np.median(cached)), 3),
        "cached_ms_p95": round(float(np.percentile(cached, 95)), 3),
        "cached_ms_max": round(float(cached.max()), 3),
        "cached_cpu_ms_median": round(float(np.median(cached_cpu)), 3),
        "batch_ms_per_query": round(batch_ms_per_query, 3),
        "naive_ms_median": round(float(np.median(naive)), 1),
        "naive_cpu_ms_median": round(float(np.median(naive_cpu)), 1),
        "speedup_median": round(float(np.median(naive) / np.median(cached)), 1),
        "speedup_cpu_median": round(float(np.median(naive_cpu) / np.median(cached_cpu)), 1),
        "naive_agrees_on_top_artist": float(agree),
        "synthetic_top1": round(float(top1), 3),
    }
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main(parse_args())
