"""The monitor as an `EventSink`: batches of events over `IngestEvents`, outcomes over
`RecordOutcomes`, and the pipeline's counters as Prometheus metrics. Every call is bounded
by a timeout, so an unreachable monitor costs the sender task one timeout per flush, and
the data path nothing."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.errors import UnavailableError
from modelhub.common.events import MAX_OUTPUTS, Event, EventPipeline, Outcome, SendResult

# ------------------------------------------------------------------ domain → monitor


def _timestamp(epoch_s: float) -> Timestamp:
    # Split before scaling: epoch seconds × 1e9 exceeds a double's exact integers.
    seconds = int(epoch_s)
    return Timestamp(seconds=seconds, nanos=min(round((epoch_s - seconds) * 1e9), 999_999_999))


def _add_values(
    field: RepeatedCompositeFieldContainer[mpb.FeatureValue],
    values: Iterable[tuple[str, float]],
) -> None:
    add = field.add
    for name, value in values:
        if math.isfinite(value):
            add(name=name, number=value)


def _seconds(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _fill(message: mpb.InferenceEvent, event: Event) -> None:
    """Set the fields of `message` from `event`. Only fields that differ from their default
    are set (the wire form is the same, and most are empty on most events): this runs for
    every request served, in the sender task."""
    message.request_id = event.request_id
    # Set in place: a separate Timestamp per event costs as much as the rest of the event.
    epoch_s = event.time
    seconds = int(epoch_s)
    time = message.time
    time.seconds = seconds
    time.nanos = min(round((epoch_s - seconds) * 1e9), 999_999_999)
    message.model = "models/" + event.model
    message.version = event.version
    message.latency_seconds = _seconds(event.latency_s)
    message.source = event.source
    if event.endpoint:
        message.endpoint = event.endpoint
    if event.variant:
        message.variant = event.variant
    if event.queue_s:
        message.queue_seconds = _seconds(event.queue_s)
    if event.compute_s:
        message.compute_seconds = _seconds(event.compute_s)
    if event.status_code:
        message.status_code = event.status_code
    if event.key_hash:
        message.key_hash = event.key_hash
    if event.rows:
        message.rows = event.rows
    if event.features:
        _add_values(message.features, event.features)
    if event.predictions:
        _add_values(message.predictions, event.predictions)
    if event.shadows:
        add = message.shadows.add
        for c in event.shadows:
            add(
                shadow=c.shadow,
                model=f"models/{c.model}",
                version=c.version,
                status_code=c.status_code,
                latency_seconds=_seconds(c.latency_s),
                max_abs_diff=c.max_abs_diff,
                argmax_agree=c.argmax_agree,
                has_argmax=c.has_argmax,
            )
    if event.traceparent:
        message.traceparent = event.traceparent
    if event.shadow:
        message.shadow = True
    if event.mirrored:
        message.mirrored = True
        if event.mirrored_to:
            message.mirrored_to.extend(event.mirrored_to)
    if event.outputs:
        message.outputs.extend(event.outputs[:MAX_OUTPUTS])


def event_to_pb(event: Event) -> mpb.InferenceEvent:
    message = mpb.InferenceEvent()
    _fill(message, event)
    return message


def events_to_pb(events: Sequence[Event]) -> mpb.IngestEventsRequest:
    """One batch, built in place (`events.add()`: no message per event to copy)."""
    request = mpb.IngestEventsRequest()
    add = request.events.add
    for event in events:
        _fill(add(), event)
    return request


def outcomes_to_pb(outcomes: Sequence[Outcome]) -> mpb.RecordOutcomesRequest:
    return mpb.RecordOutcomesRequest(
        outcomes=[
            mpb.Outcome(
                request_id=o.request_id, value=o.value, kind=o.kind, time=_timestamp(o.time)
            )
            for o in outcomes
        ]
    )


# ------------------------------------------------------------------------- the sink


class MonitorSink:
    """Sends events and outcomes to the monitor service."""

    def __init__(
        self,
        address: str,
        *,
        token: str = "",
        timeout_s: float = 5.0,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        self.address = address
        self._channel = service_channel(address, max_message_bytes)
        self._stub = mpb_grpc.MonitorServiceStub(self._channel)
        self._metadata = bearer(token)
        self._timeout = timeout_s

    async def send_events(self, events: Sequence[Event]) -> SendResult:
        request = events_to_pb(events)

        async def batches() -> AsyncIterator[mpb.IngestEventsRequest]:
            yield request

        try:
            response = await self._stub.IngestEvents(
                batches(), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"monitor {self.address}: {exc.code().name}: {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from None
        return SendResult(response.accepted, response.rejected, response.dropped)

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """Send outcomes; how many the monitor attributed to a request it has seen."""
        try:
            response = await self._stub.RecordOutcomes(
                outcomes_to_pb(outcomes), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"monitor {self.address}: {exc.code().name}: {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from None
        return int(response.attributed)

    async def close(self) -> None:
        await self._channel.close()


# ----------------------------------------------------------------------- metrics


class PipelineCollector(Collector):
    """`{prefix}_monitor_events_total{result}` (sent, dropped),
    `{prefix}_monitor_events_dropped_total{reason}`, `{prefix}_monitor_events_buffered` and
    `{prefix}_monitor_events_buffered_bytes`, read from the pipeline's counters at scrape
    time."""

    def __init__(self, pipeline: EventPipeline, prefix: str) -> None:
        self._pipeline = pipeline
        self._prefix = prefix

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        pipeline = self._pipeline
        events = CounterMetricFamily(
            f"{self._prefix}_monitor_events",
            "Events for the monitor: sent (accepted by it) or dropped (buffer full, monitor "
            "unreachable, or refused by it).",
            labels=("result",),
        )
        events.add_metric(["sent"], float(pipeline.sent))
        events.add_metric(["dropped"], float(pipeline.dropped))
        yield events
        dropped = CounterMetricFamily(
            f"{self._prefix}_monitor_events_dropped",
            "Events dropped, by reason: buffer_full (max events waiting), buffer_bytes (the "
            "waiting events' estimated memory at its bound), monitor_unreachable, "
            "monitor_refused.",
            labels=("reason",),
        )
        for reason, count in pipeline.dropped_by_reason.items():
            dropped.add_metric([reason], float(count))
        yield dropped
        yield GaugeMetricFamily(
            f"{self._prefix}_monitor_events_buffered",
            "Events waiting to be sent to the monitor.",
            value=float(pipeline.buffered),
        )
        yield GaugeMetricFamily(
            f"{self._prefix}_monitor_events_buffered_bytes",
            "Estimated memory of the events waiting to be sent and of the batch in flight.",
            value=float(pipeline.buffered_bytes),
        )


def register_pipeline_metrics(
    registry: CollectorRegistry, pipeline: EventPipeline, prefix: str
) -> PipelineCollector:
    collector = PipelineCollector(pipeline, prefix)
    registry.register(collector)
    return collector
