"""The micro-batcher on its own: gathering, bounds, failures, cancellations."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from mimicry.service.batching import MicroBatcher, Overloaded


def run(coro):
    return asyncio.run(coro)


def test_concurrent_submissions_share_calls_and_get_their_own_rows():
    calls = []

    def model(x):
        calls.append(len(x))
        return x.sum(axis=1)

    async def main():
        b = MicroBatcher(model, max_size=8, max_wait_ms=20, max_queue=64)
        await b.start()
        try:
            xs = [np.full(4, i, np.float32) for i in range(20)]
            out = await asyncio.gather(*(b.submit(x) for x in xs))
        finally:
            await b.stop()
        return out

    out = run(main())
    assert [float(o) for o in out] == [4.0 * i for i in range(20)]
    assert sum(calls) == 20 and max(calls) == 8 and len(calls) <= 4


def test_max_size_one_turns_batching_off():
    calls = []

    async def main():
        b = MicroBatcher(lambda x: calls.append(len(x)) or x[:, 0], max_size=1, max_wait_ms=50, max_queue=16)
        await b.start()
        try:
            await asyncio.gather(*(b.submit(np.ones(2, np.float32)) for _ in range(6)))
        finally:
            await b.stop()

    run(main())
    assert calls == [1] * 6


def test_full_queue_refuses_at_once_and_recovers():
    gate = threading.Event()

    def slow_model(x):
        gate.wait(10)
        return x[:, 0]

    async def main():
        b = MicroBatcher(slow_model, max_size=1, max_wait_ms=0, max_queue=2)
        await b.start()
        try:
            first = asyncio.create_task(b.submit(np.ones(1, np.float32)))
            await asyncio.sleep(0.05)  # the worker took it and is blocked in the model
            queued = [asyncio.create_task(b.submit(np.ones(1, np.float32))) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert b.depth == 2
            with pytest.raises(Overloaded):
                await b.submit(np.ones(1, np.float32))
            gate.set()
            await asyncio.gather(first, *queued)
            assert float(await b.submit(np.full(1, 7, np.float32))) == 7.0  # serving again
        finally:
            gate.set()
            await b.stop()

    run(main())


def test_a_failing_model_fails_its_batch_only():
    def model(x):
        if (x < 0).any():
            raise RuntimeError("model exploded")
        return x[:, 0]

    async def main():
        b = MicroBatcher(model, max_size=4, max_wait_ms=0, max_queue=8)
        await b.start()
        try:
            with pytest.raises(RuntimeError, match="exploded"):
                await b.submit(np.full(1, -1, np.float32))
            return float(await b.submit(np.full(1, 3, np.float32)))
        finally:
            await b.stop()

    assert run(main()) == 3.0


def test_cancelled_requests_are_not_run():
    seen = []

    def model(x):
        seen.append(x[:, 0].tolist())
        return x[:, 0]

    gate = threading.Event()

    def gated(x):
        gate.wait(10)
        return model(x)

    async def main():
        b = MicroBatcher(gated, max_size=4, max_wait_ms=0, max_queue=8)
        await b.start()
        try:
            blocker = asyncio.create_task(b.submit(np.full(1, 0, np.float32)))
            await asyncio.sleep(0.05)
            gone = asyncio.create_task(b.submit(np.full(1, 1, np.float32)))
            kept = asyncio.create_task(b.submit(np.full(1, 2, np.float32)))
            await asyncio.sleep(0.01)
            gone.cancel()  # e.g. the request timed out while waiting
            gate.set()
            await blocker
            assert float(await kept) == 2.0
        finally:
            gate.set()
            await b.stop()

    run(main())
    assert seen == [[0.0], [2.0]]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, max_size=0, max_wait_ms=1, max_queue=4)
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, max_size=8, max_wait_ms=1, max_queue=4)


def test_a_lone_request_does_not_wait_for_company():
    import time

    async def main():
        b = MicroBatcher(lambda x: x[:, 0], max_size=16, max_wait_ms=500, max_queue=16, pending=lambda: 0)
        await b.start()
        try:
            t0 = time.perf_counter()
            await b.submit(np.ones(1, np.float32))
            return time.perf_counter() - t0
        finally:
            await b.stop()

    assert run(main()) < 0.25  # far below the 500 ms max wait: nothing else was on its way


def test_waits_while_others_are_on_their_way():
    calls = []
    on_the_way = {"n": 1}

    async def main():
        b = MicroBatcher(lambda x: calls.append(len(x)) or x[:, 0], max_size=16, max_wait_ms=2000,
                         max_queue=16, pending=lambda: on_the_way["n"])
        await b.start()
        try:
            first = asyncio.create_task(b.submit(np.ones(1, np.float32)))
            await asyncio.sleep(0.1)  # the first waits: one more is being decoded
            on_the_way["n"] = 0
            await b.submit(np.ones(1, np.float32))
            await first
        finally:
            await b.stop()

    run(main())
    assert calls == [2]
