"""Dynamic micro-batching: concurrent requests share one onnxruntime call.

Each request puts its preprocessed image on a bounded queue and awaits a future. One worker task
takes the first waiting image, then whatever else is already queued, then, while other requests
are still being decoded (``pending()``, when given, counts them) and at most ``max_wait_ms``, waits
for more, up to ``max_size`` images. With nothing else on its way it runs at once, so a lone
request never pays the wait; it runs the model on the stack in a thread (so
the event loop keeps accepting requests while the model works) and resolves each future with its
row. When ``max_queue`` images are already waiting, :meth:`MicroBatcher.submit` refuses at once
(:class:`Overloaded`) so the service can answer 503 instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Overloaded(Exception):
    """The queue is full; try again later."""


class MicroBatcher:
    """Gathers single inputs into batches for ``run_batch(stacked) -> per-row outputs``."""

    def __init__(self, run_batch: Callable[[np.ndarray], np.ndarray], *, max_size: int, max_wait_ms: float,
                 max_queue: int, on_batch: Callable[[int, float], None] | None = None,
                 pending: Callable[[], int] | None = None):
        if max_size < 1 or max_queue < max_size:
            raise ValueError(f"need 1 <= max_size <= max_queue, got max_size={max_size}, max_queue={max_queue}")
        self.run_batch = run_batch
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.pending = pending
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # One thread: onnxruntime already uses every core inside a call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.batches = 0  # model calls made so far

    @property
    def depth(self) -> int:
        """Images waiting for the model (not counting the batch being run)."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._worker(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)
        if self._queue is not None:  # whoever still waits gets an answer, not a hang
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(Overloaded("the service is shutting down"))

    async def submit(self, x: np.ndarray):
        """The model's output row for one preprocessed input; raises :class:`Overloaded`."""
        if self._queue is None or not self.running:
            raise RuntimeError("the batcher is not running")
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"{self._queue.qsize()} images are already waiting for the model")
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((x, fut))
        return await fut

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_size:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or (self.pending is not None and self.pending() <= 0):
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(x, f) for x, f in batch if not f.done()]  # requests that timed out are dropped
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                out = await loop.run_in_executor(self._executor, self.run_batch, np.stack([x for x, _ in live]))
            except Exception as exc:  # the model failed: every request of this batch hears why
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches += 1
            if self.on_batch is not None:
                self.on_batch(len(live), time.perf_counter() - t0)
            for (_, f), row in zip(live, out):
                if not f.done():
                    f.set_result(row)
