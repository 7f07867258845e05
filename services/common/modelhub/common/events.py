"""Events for the monitor: one per served request, sent in batches without ever blocking
or slowing a request (inference reports every request it serves; the router used to).

`EventPipeline.emit` appends to a bounded buffer (O(1), no await); a background task sends
the buffer in batches every `flush_interval_s`, or sooner when a batch is full. When the
buffer is full, or the monitor cannot be reached, events are dropped and counted: they are
never queued without bound, and a monitor outage costs the data path nothing.

The buffer is bounded twice: by count (`max_buffered`) and by bytes (`max_buffered_bytes`,
each event's memory estimated from what it carries: sampled values, output rows, shadow
comparisons, a deferred payload), the batch in flight included. A monitor that hangs while
events carry large samples therefore holds at most that many bytes of them.

Outcomes go through the same task, *after* the events queued before them, so that the
monitor has seen a request before its outcome arrives (it joins them by request id).

The sink (the monitor's gRPC API, `modelhub.common.monitor_sink`) is injected; so is an
optional sampler that turns an event's deferred `payload` into input and output samples
in the background task rather than on the request path.

The pipeline is generic in what it carries: inference's payload audit records
(`modelhub.common.audit`) go through a pipeline of their own, with their own bounds and
counters, so that large audit payloads never crowd out the events (`size` estimates an
item's memory; `event_bytes` for events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("modelhub.common.events")


@dataclass(slots=True)
class Comparison:
    """A shadow's answer compared with the primary's for the same request."""

    shadow: str
    model: str  # model id
    version: int
    status_code: int  # gRPC code of the shadow call, 0 = OK
    latency_s: float
    max_abs_diff: float = 0.0
    argmax_agree: bool = False
    has_argmax: bool = False


# Most output values an event carries for a shadow comparison.
MAX_OUTPUTS = 64


@dataclass(slots=True)
class Event:
    """One served request."""

    request_id: str
    time: float  # epoch seconds at arrival
    endpoint: str  # `endpoints/{e}`, "" for a plain model request
    variant: str
    model: str  # model id
    version: int
    latency_s: float = 0.0
    status_code: int = 0
    key_hash: str = ""
    queue_s: float = 0.0
    compute_s: float = 0.0
    # Whatever the sampler needs (e.g. request and response bytes), kept only for events
    # sampled for drift; decoded into `features`/`predictions` off the request path.
    payload: Any = None
    rows: int = 0
    features: list[tuple[str, float]] = field(default_factory=list)
    predictions: list[tuple[str, float]] = field(default_factory=list)
    shadows: list[Comparison] = field(default_factory=list)
    # W3C traceparent of the request when it is traced (sampled), else "".
    traceparent: str = ""
    source: str = "inference"
    # A shadow copy (`variant` names the shadow) or a mirrored primary: both carry the
    # first output row in `outputs` (at most MAX_OUTPUTS values), and the monitor joins
    # the two by `request_id`.
    shadow: bool = False
    mirrored: bool = False
    outputs: list[float] = field(default_factory=list)
    # With `mirrored`: the shadows the primary was sent to (`{shadow}={model}:{version}`).
    mirrored_to: tuple[str, ...] = ()


# What an outcome reports (`Outcome.kind`); the router and the monitor accept these.
OUTCOME_KINDS = ("conversion", "reward", "label")


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    value: float
    kind: str
    time: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class SendResult:
    accepted: int
    rejected: int = 0
    dropped: int = 0


T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class EventSink(Protocol[T_contra]):
    """Where events go (the monitor). Raise to report that nothing was delivered."""

    async def send_events(self, events: Sequence[T_contra]) -> SendResult: ...

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """Send outcomes; how many were attributed to a served request."""
        ...


# payload → (rows, features, predictions)
Sampler = Callable[[Any], tuple[int, list[tuple[str, float]], list[tuple[str, float]]]]

# Memory estimates (CPython, 64-bit), generous rather than exact: an event with its three
# empty lists and small strings; a sampled (name, value) pair (the tuple, its float and
# its list slot; names are shared); an output value (a float and its slot); a comparison.
EVENT_BYTES = 640
VALUE_BYTES = 96
OUTPUT_BYTES = 32
COMPARISON_BYTES = 256

# Why events were dropped (the `reason` of the drop counter).
DROP_BUFFER_FULL = "buffer_full"  # max_buffered events are waiting
DROP_BUFFER_BYTES = "buffer_bytes"  # the waiting events hold max_buffered_bytes
DROP_UNREACHABLE = "monitor_unreachable"  # the send failed
DROP_REFUSED = "monitor_refused"  # the monitor rejected or dropped them
DROP_REASONS = (DROP_BUFFER_FULL, DROP_BUFFER_BYTES, DROP_UNREACHABLE, DROP_REFUSED)


def payload_bytes(payload: Any) -> int:
    """Estimated memory of a deferred payload: buffers and arrays by their size, a tuple or
    list by its items (one level), anything else by `sys.getsizeof`."""
    if payload is None:
        return 0
    if isinstance(payload, bytes | bytearray | str):
        return len(payload)
    nbytes = getattr(payload, "nbytes", None)  # numpy arrays, memoryviews
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(payload, tuple | list):
        total = 8 * len(payload)
        for item in payload:
            if isinstance(item, bytes | bytearray | str):
                total += len(item)
            else:
                nbytes = getattr(item, "nbytes", None)
                total += nbytes if isinstance(nbytes, int) else sys.getsizeof(item)
        return total
    return sys.getsizeof(payload)


def event_bytes(event: Event) -> int:
    """A cheap estimate of the memory `event` holds (lengths only, no traversal of the
    values): what the byte bound of the buffer counts."""
    size = (
        EVENT_BYTES
        + len(event.request_id)
        + len(event.endpoint)
        + len(event.variant)
        + len(event.model)
        + len(event.key_hash)
        + len(event.traceparent)
    )
    values = len(event.features) + len(event.predictions)
    if values:
        size += VALUE_BYTES * values
    if event.outputs:
        size += OUTPUT_BYTES * len(event.outputs)
    if event.shadows:
        size += COMPARISON_BYTES * len(event.shadows)
    if event.payload is not None:
        size += payload_bytes(event.payload)
    return size


class EventPipeline(Generic[T]):
    """Bounded event buffer and its sender task (events, or any item `size` can estimate;
    `what` names them in log lines)."""

    def __init__(
        self,
        sink: EventSink[T],
        *,
        max_buffered: int,
        batch_size: int,
        flush_interval_s: float,
        max_outcomes: int,
        sampler: Sampler | None = None,
        max_buffered_bytes: int = 16 << 20,
        size: Callable[[Any], int] = event_bytes,
        what: str = "events",
    ) -> None:
        self._sink = sink
        self._sampler = sampler
        self._size = size
        self.what = what
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_outcomes = max_outcomes
        self._events: deque[T] = deque()
        # The estimate of each queued event (`size` when queued), in queue order.
        self._sizes: deque[int] = deque()
        # Estimated bytes of the queued events and of the batch in flight.
        self.buffered_bytes = 0
        self._outcomes: deque[Outcome] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.dropped_by_reason: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.outcomes_sent = 0
        self.outcomes_dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._events)

    def _drop(self, reason: str, count: int) -> None:
        self.dropped += count
        self.dropped_by_reason[reason] += count

    def emit(self, event: T) -> None:
        """Queue an event; drop it (counted) when the buffer is full, by count or by bytes.
        Never blocks."""
        if len(self._events) >= self.max_buffered:
            self._drop(DROP_BUFFER_FULL, 1)
            return
        size = self._size(event)
        if self.buffered_bytes + size > self.max_buffered_bytes:
            self._drop(DROP_BUFFER_BYTES, 1)
            return
        self.buffered_bytes += size
        self._events.append(event)
        self._sizes.append(size)
        if len(self._events) == self.batch_size:
            self._wake.set()

    def add_outcome(self, outcome: Outcome) -> bool:
        """Queue an outcome for the monitor; False (counted) when the queue is full."""
        if len(self._outcomes) >= self.max_outcomes:
            self.outcomes_dropped += 1
            return False
        self._outcomes.append(outcome)
        self._wake.set()
        return True

    def _sample(self, event: Any) -> None:
        if self._sampler is None or event.payload is None:
            return
        payload = event.payload
        event.payload = None
        try:
            event.rows, event.features, event.predictions = self._sampler(payload)
        except Exception as exc:  # a sample that cannot be decoded is only left out
            log.debug("could not sample event %s: %s", event.request_id, exc)

    async def flush(self) -> None:
        """Send everything queued now: events first, then outcomes.

        Only the events queued when the flush starts: those that arrive while a batch is
        in flight wait for the next flush (a full batch, or the interval), rather than
        going out in a stream of tiny batches, one per round trip, each costing both ends
        a whole call."""
        left = len(self._events)
        while left > 0 and self._events:
            count = min(self.batch_size, left, len(self._events))
            left -= count
            popleft = self._events.popleft
            batch = [popleft() for _ in range(count)]
            pop_size = self._sizes.popleft
            batch_bytes = sum(pop_size() for _ in range(count))
            try:
                for event in batch:
                    self._sample(event)
                result = await self._sink.send_events(batch)
            except Exception as exc:
                self._drop(DROP_UNREACHABLE, len(batch))
                log.warning(
                    "monitor unreachable: dropped %d %s (%s)",
                    len(batch),
                    self.what,
                    exc,
                    extra={
                        "fields": {
                            "event": f"{self.what.replace(' ', '_')}_dropped",
                            "count": len(batch),
                        }
                    },
                )
                # The rest would most likely fail the same way: drop it now instead of
                # waiting for one timeout per batch.
                self._drop(DROP_UNREACHABLE, len(self._events))
                self._events.clear()
                self.buffered_bytes -= sum(self._sizes)
                self._sizes.clear()
                break
            finally:
                # Counted until the send is over (or abandoned: cancelled, failed): a
                # monitor that hangs holds the batch in flight.
                self.buffered_bytes -= batch_bytes
                del batch
            self.sent += result.accepted
            self._drop(DROP_REFUSED, result.rejected + result.dropped)
        if self._outcomes:
            outcomes = list(self._outcomes)
            self._outcomes.clear()
            try:
                await self._sink.send_outcomes(outcomes)
                self.outcomes_sent += len(outcomes)
            except Exception as exc:
                self.outcomes_dropped += len(outcomes)
                log.warning("monitor unreachable: dropped %d outcomes (%s)", len(outcomes), exc)

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for, which can lose a cancellation on Python 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep sending whatever happens to one batch
                log.exception("sending events failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop the sender, after one last flush bounded by `timeout_s`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush()
