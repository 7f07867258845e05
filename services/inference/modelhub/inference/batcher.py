"""The adaptive batcher of one model version: a bounded, prioritised queue and one
executor per session instance.

- Work-conserving: an idle executor runs at once with what is queued (up to
  `max_batch_size` rows); while it runs, arrivals gather into the next batch. It holds a
  batch back only when its cost model says waiting pays (see `cost_model`), and never
  past `max_queue_delay` for the oldest request.
- Rows of many requests are concatenated along the first dimension; only requests whose
  other dimensions agree (equal shape key) share a batch. Requests with several rows
  count all their rows. String tensors (object arrays of `str`, see `signature`)
  concatenate and split the same way; nothing here weighs requests in bytes (the request
  size limit is applied when decoding, on the payload bytes).
- Priority levels are strict: a batch starts from the highest level with work and fills
  with lower levels' compatible requests only where rows are left.
- The queue is bounded: a full queue refuses at once (QueueFullError). A request whose
  deadline has passed — or would pass before its batch could finish — is dropped before
  compute with DeadlineExpiredError; a cancelled one (caller gone) is dropped silently.
- ONNX Runtime runs on the instance's own thread (it releases the GIL), so the event
  loop keeps serving and a slow model occupies only its own threads. Runs predicted to be
  shorter than a thread hand-off (`inline_threshold_s`) run on the event loop instead;
  a version whose inline runs turn out slow loses that privilege.
- Every batch reports to the observer (statistics, Prometheus) and, when one of its
  requests is sampled, gets an `inference.batch` span linked to the requests' spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np
from opentelemetry.trace import Link, SpanContext, Tracer

from modelhub.common.errors import (
    DeadlineExpiredError,
    InternalError,
    ModelHubError,
    ModelNotReadyError,
    QueueFullError,
)
from modelhub.inference.cost_model import CostModel, single_cpu
from modelhub.inference.signature import ShapeKey
from modelhub.inference.spec import BatchingPolicy

log = logging.getLogger("modelhub.inference.batcher")

INF = float("inf")

# Job states.
QUEUED, TAKEN, DROPPED = 0, 1, 2


class Instance(Protocol):
    """One session of a version, with the thread its runs use."""

    @property
    def name(self) -> str: ...

    @property
    def executor(self) -> Executor:
        """The thread the instance's runs use."""
        ...

    def timed_run(self, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
        """Run the session; return the outputs and the seconds the run took."""
        ...


class BatchObserver(Protocol):
    """Where the batcher reports what happened (metrics and statistics)."""

    def batch_done(
        self,
        jobs: Sequence[Job],
        rows: int,
        started: float,
        input_s: float,
        infer_s: float,
        output_s: float,
    ) -> None: ...

    def queue_depth(self, depth: int) -> None: ...

    def rejected(self) -> None: ...

    def expired(self, count: int) -> None: ...


class Job:
    """One queued request: its input arrays (in session order) and the future to answer."""

    __slots__ = (
        "arrays",
        "deadline",
        "enqueued",
        "future",
        "key",
        "level",
        "rows",
        "seq",
        "span_context",
        "state",
    )

    def __init__(
        self,
        arrays: tuple[np.ndarray, ...] | None,
        rows: int,
        key: ShapeKey | None,
        level: int,
        deadline: float,
        enqueued: float,
        future: asyncio.Future[list[np.ndarray]],
        span_context: SpanContext | None,
        seq: int,
    ) -> None:
        self.arrays = arrays
        self.rows = rows
        self.key = key
        self.level = level
        self.deadline = deadline
        self.enqueued = enqueued
        self.future = future
        self.span_context = span_context
        self.seq = seq
        self.state = QUEUED


class AdaptiveBatcher:
    """Queue and executors of one model version (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        input_names: Sequence[str],
        instances: Sequence[Instance],
        policy: BatchingPolicy,
        batchable: bool,
        cost: CostModel,
        observer: BatchObserver,
        tracer: Tracer | None = None,
        inline_threshold_s: float = 0.0,
        span_attributes: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.cost = cost
        self._input_names = tuple(input_names)
        self._instances = tuple(instances)
        self._batchable = batchable
        self._max_rows = max(1, policy.max_batch_size) if batchable else 1
        self._levels_count = max(1, policy.priority_levels)
        # Per priority level: shape key → FIFO of jobs. Non-batchable jobs share key None
        # and are taken one at a time. One more level than configured, below them all, holds
        # background work (shadow copies): it runs only when nothing else waits.
        self._levels: list[dict[ShapeKey | None, deque[Job]]] = [
            {} for _ in range(self._levels_count + 1)
        ]
        # Background work may fill at most half the queue: it never takes the room of
        # the requests someone waits for.
        self._background_limit = max(1, policy.max_queue_size // 2)
        self._rows: dict[ShapeKey | None, int] = {}
        self._depth = 0
        self._seq = 0
        # One usable core: ORT's thread and the event loop share it.
        self._single_cpu = single_cpu()
        self._observer = observer
        self._tracer = tracer
        self._inline_threshold = inline_threshold_s
        self._slow_inline = 0.0
        self._span_attributes = dict(span_attributes or {})
        self._idle: deque[asyncio.Future[None]] = deque()
        self._timeouts: list[tuple[float, int, Job]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = INF
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start one executor task per instance (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        for instance in self._instances:
            task = self._loop.create_task(
                self._execute(instance), name=f"{self.name}:{instance.name}"
            )
            self._tasks.append(task)

    @property
    def depth(self) -> int:
        """Requests waiting (cancelled ones count until an executor discards them)."""
        return self._depth

    async def close(self) -> None:
        """Stop the executors. Queued requests fail with MODEL_NOT_READY; callers that
        want them answered wait for the version to drain first."""
        self._closing = True
        for waiter in self._idle:
            if not waiter.done():
                waiter.set_result(None)
        self._idle.clear()
        if self._timer is not None:
            self._timer.cancel()
        for level in self._levels:
            for jobs in level.values():
                for job in jobs:
                    self._drop(job, ModelNotReadyError(f"model version {self.name} was unloaded"))
            level.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ admission

    def submit(
        self,
        arrays: tuple[np.ndarray, ...],
        rows: int,
        key: ShapeKey | None,
        *,
        priority: int = 0,
        deadline: float = INF,
        server_deadline: bool = False,
        span_context: SpanContext | None = None,
        background: bool = False,
    ) -> asyncio.Future[list[np.ndarray]]:
        """Queue a request; the future resolves to every session output for its rows.

        `background` requests (shadow copies nobody waits for) go below every priority
        level and may fill at most half the queue.

        `deadline` is on the loop clock. With `server_deadline` the batcher itself
        answers DEADLINE_EXCEEDED when it passes while queued (the transport does that
        for gRPC deadlines). Raises QueueFullError at once when the queue is full.
        """
        loop = self._loop
        if loop is None or self._closing:
            raise ModelNotReadyError(f"model version {self.name} is not serving")
        if self._depth >= self.policy.max_queue_size or (
            background and self._depth >= self._background_limit
        ):
            self._observer.rejected()
            raise QueueFullError(
                f"the queue of model version {self.name} is full "
                f"({self.policy.max_queue_size} requests waiting); retry later",
                metadata={"max_queue_size": str(self.policy.max_queue_size)},
            )
        now = loop.time()
        # 1 is the highest level; 0 (not given) and anything past the last is the lowest.
        if background:
            level = self._levels_count
        elif priority > 0:
            level = min(priority, self._levels_count) - 1
        else:
            level = self._levels_count - 1
        future: asyncio.Future[list[np.ndarray]] = loop.create_future()
        self._seq += 1
        if not self._batchable:
            key = None
        job = Job(arrays, rows, key, level, deadline, now, future, span_context, self._seq)
        queue = self._levels[level].get(key)
        if queue is None:
            queue = self._levels[level][key] = deque()
        queue.append(job)
        self._rows[key] = self._rows.get(key, 0) + rows
        self._depth += 1
        self.cost.arrivals.add(rows, now)
        if server_deadline and deadline < INF:
            heapq.heappush(self._timeouts, (deadline, job.seq, job))
            if deadline < self._timer_at:
                self._arm_timer()
        if self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
        return future

    # ------------------------------------------------------------------ deadlines

    def _arm_timer(self) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = INF
        while self._timeouts and self._timeouts[0][2].state != QUEUED:
            heapq.heappop(self._timeouts)
        if self._timeouts:
            self._timer_at = self._timeouts[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._expire_due)

    def _expire_due(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = INF
        now = self._loop.time()
        expired = 0
        while self._timeouts and self._timeouts[0][0] <= now:
            _, _, job = heapq.heappop(self._timeouts)
            if job.state == QUEUED:
                self._unqueue(job)
                self._drop(job, self._deadline_error())
                expired += 1
        if expired:
            self._observer.expired(expired)
            self._observer.queue_depth(self._depth)
        self._arm_timer()

    def _deadline_error(self) -> DeadlineExpiredError:
        return DeadlineExpiredError(
            f"the request's deadline passed while it waited for model version {self.name}"
        )

    def _unqueue(self, job: Job) -> None:
        """Remove a queued job from the queue's accounting (it stays in its deque, marked,
        and is discarded when reached: removing from the middle of a deque is O(n))."""
        self._depth -= 1
        self._rows[job.key] -= job.rows

    def _drop(self, job: Job, error: ModelHubError | None) -> None:
        job.state = DROPPED
        job.arrays = None
        if error is not None and not job.future.done():
            job.future.set_exception(error)

    # ------------------------------------------------------------------ executors

    def _head(self) -> tuple[ShapeKey | None, float] | None:
        """The shape key and age origin of the next batch: the oldest live request of the
        highest priority level with work. Discards dead requests on the way."""
        for level in self._levels:
            best: Job | None = None
            for key in list(level):
                queue = level[key]
                while queue:
                    job = queue[0]
                    if job.state == QUEUED and not job.future.cancelled():
                        break
                    queue.popleft()
                    if job.state == QUEUED:  # cancelled by its caller
                        self._unqueue(job)
                        self._drop(job, None)
                else:
                    del level[key]
                    continue
                if best is None or queue[0].seq < best.seq:
                    best = queue[0]
            if best is not None:
                return best.key, best.enqueued
        return None

    def _take(self, key: ShapeKey | None, now: float) -> tuple[list[Job], int]:
        """Dequeue up to max_rows rows of requests with shape `key`, highest level first."""
        max_rows = self._max_rows
        # Requests that cannot finish in time are not worth computing.
        horizon = now + self.cost.curve.predict(min(self._rows.get(key, 0), max_rows))
        jobs: list[Job] = []
        total = 0
        expired = 0
        for level in self._levels:
            queue = level.get(key)
            while queue and total < max_rows:
                job = queue[0]
                if job.state != QUEUED:
                    queue.popleft()
                    continue
                if job.future.cancelled():
                    queue.popleft()
                    self._unqueue(job)
                    self._drop(job, None)
                    continue
                if job.deadline < horizon:
                    queue.popleft()
                    self._unqueue(job)
                    self._drop(job, self._deadline_error())
                    expired += 1
                    continue
                if total + job.rows > max_rows:
                    break
                queue.popleft()
                self._unqueue(job)
                job.state = TAKEN
                jobs.append(job)
                total += job.rows
            if queue is not None and not queue:
                del level[key]
            if total >= max_rows:
                break
        if expired:
            self._observer.expired(expired)
        self._observer.queue_depth(self._depth)
        return jobs, total

    async def _wait_for_work(self, until: float = INF) -> None:
        """Sleep until a request arrives (or `until`, on the loop clock)."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._idle.append(waiter)
        timer = None
        if until < INF:
            timer = self._loop.call_at(until, _resolve, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):  # already taken by submit()
                self._idle.remove(waiter)

    async def _execute(self, instance: Instance) -> None:
        assert self._loop is not None
        loop = self._loop
        policy = self.policy
        hold_until = INF
        held_since = 0.0  # when the current hold began (0: not holding)
        held_rows = 0  # rows queued then
        while not self._closing:
            if self._depth <= 0:
                hold_until = INF
                held_since = 0.0
                await self._wait_for_work()
                continue
            head = self._head()
            if head is None:
                if self._depth > 0:  # accounting bug: never spin on a phantom depth
                    log.error("%s: queue depth %d with no live request", self.name, self._depth)
                    self._depth = 0
                continue
            key, oldest = head
            now = loop.time()
            if self._batchable:
                queued = self._rows.get(key, 0)
                hold = self.cost.hold_time(
                    queued,
                    now - oldest,
                    policy.max_queue_delay_s,
                    self._max_rows,
                    now,
                    self._shares_cpu(queued),
                )
                if hold > 0.0 or hold_until < INF:
                    # Re-evaluated on every arrival; a hold only ever gets shorter.
                    hold_until = min(hold_until, now + hold) if hold > 0.0 else now
                    if hold_until > now and queued < self._max_rows:
                        if not held_since:
                            held_since, held_rows = now, queued
                        await self._wait_for_work(hold_until)
                        continue
                if held_since:
                    self.cost.observe_hold(now - held_since, queued - held_rows, now)
                    held_since = 0.0
            hold_until = INF
            jobs, rows = self._take(key, now)
            if jobs:
                await self._run(instance, jobs, rows)

    def _runs_inline(self, rows: int) -> bool:
        """Whether a run of `rows` is predicted shorter than a hand-off to its thread.
        Never before the first measurement: an unknown model may be slow."""
        curve = self.cost.curve
        return (
            self._inline_threshold > 0
            and curve.observed
            and curve.predict(rows) <= self._inline_threshold
        )

    def _check_inline(self, seconds: float) -> None:
        # Runs far slower than predicted (input-dependent cost) block the event loop: after
        # a few, this version's runs go to its thread for good. Single slow runs (the
        # process was preempted) are forgiven as normal runs follow.
        if seconds > 4 * self._inline_threshold:
            self._slow_inline += 1.0
            if self._slow_inline >= 3.0:
                log.warning(
                    "%s: inline runs take up to %.1f ms; running on the thread from now on",
                    self.name,
                    seconds * 1e3,
                )
                self._inline_threshold = 0.0
        elif self._slow_inline > 0.0:
            self._slow_inline = max(0.0, self._slow_inline - 0.02)

    def _shares_cpu(self, rows: int) -> bool:
        """Whether a run of `rows` competes with request handling for the CPU."""
        return self._single_cpu or self._runs_inline(rows)

    async def _run(self, instance: Instance, jobs: list[Job], rows: int) -> None:
        assert self._loop is not None
        started = self._loop.time()
        t0 = time.perf_counter()
        feeds = self._feeds(jobs)
        input_s = time.perf_counter() - t0
        span = self._batch_span(jobs, rows, instance)
        waited = 0.0  # time off the loop thread, excluded from the loop's overhead
        try:
            if self._runs_inline(rows):
                outputs, infer_s = instance.timed_run(feeds)
                waited = infer_s
                self._check_inline(infer_s)
            else:
                t_off = time.perf_counter()
                outputs, infer_s = await self._loop.run_in_executor(
                    instance.executor, instance.timed_run, feeds
                )
                waited = time.perf_counter() - t_off
        except asyncio.CancelledError:
            error: ModelHubError = ModelNotReadyError(f"model version {self.name} was unloaded")
            self._fail(jobs, error, span)
            raise
        except ModelHubError as exc:
            self._fail(jobs, exc, span)
            return
        except Exception as exc:
            log.exception("inference failed on %s", self.name)
            self._fail(jobs, InternalError(f"inference failed: {exc}"), span)
            return
        self.cost.curve.observe(rows, infer_s)
        t1 = time.perf_counter()
        if not self._answer(jobs, rows, outputs, span):
            return
        output_s = time.perf_counter() - t1
        if span is not None:
            span.set_attribute("modelhub.compute_seconds", infer_s)
            span.end()
        self._observer.batch_done(jobs, rows, started, input_s, infer_s, output_s)
        self.cost.observe_overhead(time.perf_counter() - t0 - waited)

    def _feeds(self, jobs: list[Job]) -> dict[str, np.ndarray]:
        """The session inputs of a batch: each input's rows of every job, concatenated in
        job order. The jobs let go of their arrays."""
        if len(jobs) == 1:
            arrays = jobs[0].arrays or ()
        else:
            arrays = tuple(
                np.concatenate([job.arrays[i] for job in jobs])  # type: ignore[index]
                for i in range(len(self._input_names))
            )
        feeds = dict(zip(self._input_names, arrays, strict=True))
        for job in jobs:
            job.arrays = None  # the batch holds the data now; free the request's copy early
        return feeds

    def _answer(self, jobs: list[Job], rows: int, outputs: list[np.ndarray], span: Any) -> bool:
        """Give each job its rows of every output; False (the jobs failed, the span ended)
        when an output does not have one row per batch row."""
        if len(jobs) == 1:
            future = jobs[0].future
            if not future.done():
                future.set_result(outputs)
            return True
        for output in outputs:
            if output.ndim == 0 or output.shape[0] != rows:
                self._fail(
                    jobs,
                    InternalError(
                        f"model version {self.name} returned an output of shape "
                        f"{list(output.shape)} for a batch of {rows} rows"
                    ),
                    span,
                )
                return False
        offset = 0
        for job in jobs:
            end = offset + job.rows
            if not job.future.done():
                job.future.set_result([output[offset:end] for output in outputs])
            offset = end
        return True

    def _fail(self, jobs: list[Job], error: ModelHubError, span: Any) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)
        if span is not None:
            span.record_exception(error)
            span.end()

    def _batch_span(self, jobs: list[Job], rows: int, instance: Instance) -> Any:
        """A span for the run, linked to the spans of the requests it serves; none when
        no request is sampled (nothing would record it)."""
        if self._tracer is None:
            return None
        links = [
            Link(job.span_context)
            for job in jobs
            if job.span_context is not None and job.span_context.trace_flags.sampled
        ]
        if not links:
            return None
        return self._tracer.start_span(
            "inference.batch",
            links=links,
            attributes={
                **self._span_attributes,
                "modelhub.batch.rows": rows,
                "modelhub.batch.requests": len(jobs),
                "modelhub.instance": instance.name,
            },
        )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
