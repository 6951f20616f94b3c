"""Where a request's work runs, and what it may cost.

The cost of an image is known before it is decoded: :func:`mimicry.detector.decode.decode_cost` reads
the pixels the decode will make from the header (a large JPEG decodes at a reduced draft scale, a PNG
at full size). The service budgets by it:

- **per request**: the decode cost of all the images of one request is capped (``max_request_pixels``;
  more is 413 before any is decoded);
- **two lanes**: images that decode to more than ``large_image_pixels`` go to a lane of their own with
  ``large_decode_workers`` threads (one by default) and at most ``large_queue_max`` waiting; everything
  else decodes on the ordinary decode threads. A stream of 40-megapixel PNGs then takes at most one
  thread and its memory, never all the threads a normal upload needs;
- **memory given back**: after a large decode the C heap is trimmed (glibc ``malloc_trim``), so the
  hundreds of megabytes Pillow used for one image return to the system instead of staying in the
  process's arenas;
- **enrolment apart**: an enrolment runs on a thread of its own, one at a time (a few may wait), keeps one
  full-size decode in memory at a time, and stops at its deadline (nothing is written then);
- **cancellation waits for the work**: :func:`offload` cancels work that has not started; work already
  running in a thread cannot be stopped, so the caller waits for its end before giving up. A request
  past its deadline therefore holds its concurrency slot (and the lane's count) until its work has truly
  ended, and never leaves orphaned work behind to pile up under load.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from mimicry.detector.decode import decode_cost

from .errors import APIError

T = TypeVar("T")


async def offload(pool: ThreadPoolExecutor, fn: Callable[..., T], *args) -> T:
    """``fn(*args)`` on ``pool``. If the caller is cancelled (a deadline), work that has not started is
    dropped, and work that has is waited for before the cancellation goes on: when this returns or
    raises, nothing it started is still running."""
    loop = asyncio.get_running_loop()
    future: Future = pool.submit(fn, *args)
    done = asyncio.Event()

    def wake(_: Future) -> None:
        try:
            loop.call_soon_threadsafe(done.set)
        except RuntimeError:  # the loop has closed (shut-down): nobody waits any more
            pass

    future.add_done_callback(wake)
    try:
        await done.wait()
    except asyncio.CancelledError:
        if not future.cancel():  # running: it cannot be stopped, so its cost is counted until it ends
            while not future.done():
                try:
                    await asyncio.shield(done.wait())
                except asyncio.CancelledError:
                    continue
        raise
    return future.result()


async def gather_all(coros) -> list:
    """``asyncio.gather`` that, when one fails or the caller is cancelled, cancels the others and waits for
    them before raising: no sibling work goes on behind an answer already sent."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def decode_costs(pool: ThreadPoolExecutor, images: list[bytes], *, draft_size: int, budget: int,
                       max_pixels: int) -> list[int]:
    """Each image's decode cost (:func:`~mimicry.detector.decode.decode_cost`, read on ``pool``; an image over
    ``max_pixels`` costs nothing: it is refused from its header, one error item); 413 ``too_many_pixels`` when
    together they cost more than ``budget``, before any is decoded."""
    costs = await offload(pool, lambda: [decode_cost(data, draft_size=draft_size, max_pixels=max_pixels)
                                         for data in images])
    if sum(costs) > budget:
        raise APIError("too_many_pixels", f"the images of this request decode to {sum(costs):,} pixels; the "
                                          f"limit per request is {budget:,}")
    return costs


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc.malloc_trim if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def trim_memory() -> bool:
    """Give freed C-heap memory back to the system (glibc only; elsewhere a no-op that returns False)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class Lanes:
    """The decode threads: an ordinary lane and a lane for large images (see the module doc)."""

    def __init__(self, *, workers: int, large_workers: int, large_pixels: int, large_queue_max: int):
        self.small = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.large = ThreadPoolExecutor(max_workers=large_workers, thread_name_prefix="decode-large")
        # Enrolments (seconds of decoding and embedding each) run one at a time on a thread of their own,
        # never on the threads that decode uploads.
        self.enrol = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrol")
        self.enrolling = 0  # enrolments queued or running
        self.large_pixels = large_pixels
        self.large_queue_max = large_queue_max
        self.large_pending = 0  # large images queued or decoding

    def is_large(self, cost: int) -> bool:
        return cost > self.large_pixels

    async def run(self, cost: int, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` on the lane ``cost`` belongs to; raises :class:`LaneFull` when the large lane
        already holds ``large_queue_max`` images."""
        if not self.is_large(cost):
            return await offload(self.small, fn, *args)
        if self.large_pending >= self.large_queue_max:
            raise LaneFull(f"{self.large_pending} large images are already waiting to be decoded")
        self.large_pending += 1
        try:
            return await offload(self.large, _then_trim, fn, *args)
        finally:
            self.large_pending -= 1

    def shutdown(self) -> None:
        for pool in (self.small, self.large, self.enrol):
            pool.shutdown(wait=False, cancel_futures=True)


class LaneFull(Exception):
    """The large-image lane is full; try again later."""


def _then_trim(fn: Callable[..., T], *args) -> T:
    try:
        return fn(*args)
    finally:
        trim_memory()
