"""Shadow mirroring: copies of sampled requests go to shadow model versions, whose answers
are compared with the primary's and never returned to the caller.

The caller never waits for a shadow. `Mirror.submit` puts the job on a bounded queue and
returns at once; when the queue is full the mirror is dropped and counted. A fixed number
of workers (the shadow concurrency) send the jobs, each call bounded by the shadow timeout,
so a slow or failing shadow costs at most `concurrency` calls in flight and never slows or
fails the primary.

How the shadow call is made and how a response is decoded into tensors are injected (the
gRPC edge provides them); this module holds the policy and the comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from modelhub.router.events import Comparison, Event
from modelhub.router.table import ShadowRoute, Target

log = logging.getLogger("modelhub.router.mirror")

# gRPC's DEADLINE_EXCEEDED, reported for shadow calls that outlive the shadow timeout.
DEADLINE_EXCEEDED = 4
# Stands for "no comparable number" where the monitor needs a finite one (inf vs 1.0).
_HUGE = sys.float_info.max


@dataclass(slots=True)
class ShadowAnswer:
    """What a shadow call returned: its status code, latency and raw response (if OK)."""

    status_code: int
    latency_s: float
    response: bytes | None = None


ShadowCall = Callable[[Target, bytes, float], Awaitable[ShadowAnswer]]
Decode = Callable[[bytes], Mapping[str, np.ndarray]]


def compare(
    primary: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]
) -> tuple[float, bool, bool] | None:
    """(max absolute difference, has argmax, argmax agrees) over the outputs both answers
    hold, or None when nothing is comparable (no common output, or a shape differs).

    Argmax agreement is judged on outputs that look like class scores: floating point,
    two dimensions, more than one column; it holds when every row's argmax agrees.
    """
    max_diff = 0.0
    compared = False
    has_argmax = False
    agree = True
    for name, expected in primary.items():
        actual = shadow.get(name)
        if actual is None:
            continue
        if actual.shape != expected.shape:
            return None
        if expected.dtype.kind not in "biuf" or actual.dtype.kind not in "biuf":
            # Strings: equal or not, no magnitude.
            diff = 0.0 if np.array_equal(expected, actual) else _HUGE
        elif expected.size == 0:
            diff = 0.0
        else:
            a = expected.astype(np.float64, copy=False)
            b = actual.astype(np.float64, copy=False)
            with np.errstate(invalid="ignore", over="ignore"):
                delta = np.abs(a - b)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            delta[same] = 0.0
            delta[~np.isfinite(delta)] = _HUGE
            diff = float(delta.max())
        max_diff = max(max_diff, diff)
        compared = True
        if (
            expected.ndim == 2
            and expected.shape[1] > 1
            and expected.shape[0] > 0
            and expected.dtype.kind == "f"
            and actual.dtype.kind == "f"
        ):
            has_argmax = True
            agree = agree and bool(
                np.array_equal(np.argmax(expected, axis=1), np.argmax(actual, axis=1))
            )
    if not compared:
        return None
    return max_diff, has_argmax, has_argmax and agree


class MirroredRequest:
    """Holds a request's event until its primary and every mirror of it have finished,
    so that the one event the monitor receives carries all the shadow comparisons."""

    __slots__ = ("_emit", "_pending", "event")

    def __init__(self, event: Event | None, emit: Callable[[Event], None], pending: int) -> None:
        self.event = event
        self._emit = emit
        self._pending = pending

    def done(self, comparison: Comparison | None = None) -> None:
        if comparison is not None and self.event is not None:
            self.event.shadows.append(comparison)
        self._pending -= 1
        if self._pending == 0 and self.event is not None:
            self._emit(self.event)


@dataclass(slots=True)
class _Job:
    shadow: ShadowRoute
    target: Target
    request: bytes
    primary: asyncio.Future[bytes | None]
    tracker: MirroredRequest


class Mirror:
    """Bounded queue of shadow calls and the workers that make them."""

    def __init__(
        self,
        call: ShadowCall,
        decode: Decode,
        *,
        queue_size: int,
        concurrency: int,
        timeout_s: float,
    ) -> None:
        self._call = call
        self._decode = decode
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(queue_size)
        self._concurrency = concurrency
        self._timeout = timeout_s
        self._workers: list[asyncio.Task[None]] = []

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(
        self,
        shadow: ShadowRoute,
        request: bytes,
        primary: asyncio.Future[bytes | None],
        tracker: MirroredRequest,
    ) -> bool:
        """Queue a mirror of `request` to `shadow`. Never blocks: False (counted as
        dropped, and the tracker released) when the queue is full."""
        target = shadow.target
        if target is None:
            tracker.done()
            return False
        try:
            self._queue.put_nowait(_Job(shadow, target, request, primary, tracker))
        except asyncio.QueueFull:
            shadow.counters.dropped += 1
            tracker.done()
            return False
        shadow.counters.sent += 1
        return True

    async def _handle(self, job: _Job) -> None:
        counters = job.shadow.counters
        target = job.target
        comparison: Comparison | None = None
        try:
            started = time.perf_counter()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
            # that races with the inner call finishing, and close() would then hang.
            try:
                async with asyncio.timeout(self._timeout):
                    answer = await self._call(target, job.request, self._timeout)
            except TimeoutError:
                answer = ShadowAnswer(DEADLINE_EXCEEDED, time.perf_counter() - started)
            comparison = Comparison(
                job.shadow.spec.name,
                target.model,
                target.version,
                answer.status_code,
                answer.latency_s,
            )
            if answer.status_code != 0 or answer.response is None:
                counters.failed += 1
                return
            # The primary usually finished long ago; if not, its own deadline bounds it.
            shadow_answer = comparison
            # Until the outputs are compared, report nothing rather than a difference of 0.
            comparison = None
            async with asyncio.timeout(self._timeout):
                primary_response = await asyncio.shield(job.primary)
            if primary_response is None:
                return  # the primary failed: nothing to compare with
            result = compare(self._decode(primary_response), self._decode(answer.response))
            if result is None:
                counters.mismatched += 1
                return
            shadow_answer.max_abs_diff, shadow_answer.has_argmax, shadow_answer.argmax_agree = (
                result
            )
            comparison = shadow_answer
            counters.compared += 1
        except TimeoutError:
            pass
        except Exception:  # a bad shadow answer must never take a worker down
            comparison = None
            counters.mismatched += 1
            log.exception("comparing shadow %s failed", job.shadow.spec.name)
        finally:
            job.tracker.done(comparison)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._handle(job)
            finally:
                self._queue.task_done()

    def start(self) -> None:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._work()) for _ in range(self._concurrency)]

    async def drain(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for queued mirrors to finish."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._queue.join()

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
