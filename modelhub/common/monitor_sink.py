"""The monitor as an `EventSink`: batches of events over `IngestEvents`, outcomes over
`RecordOutcomes`, and the pipeline's counters as Prometheus metrics. Every call is bounded
by a timeout, so an unreachable monitor costs the sender task one timeout per flush, and
the data path nothing."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

import grpc
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


def _values(values: Iterable[tuple[str, float]]) -> list[mpb.FeatureValue]:
    return [mpb.FeatureValue(name=n, number=v) for n, v in values if math.isfinite(v)]


def _seconds(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def event_to_pb(event: Event) -> mpb.InferenceEvent:
    return mpb.InferenceEvent(
        request_id=event.request_id,
        time=_timestamp(event.time),
        endpoint=event.endpoint,
        variant=event.variant,
        model=f"models/{event.model}",
        version=event.version,
        latency_seconds=_seconds(event.latency_s),
        queue_seconds=_seconds(event.queue_s),
        compute_seconds=_seconds(event.compute_s),
        status_code=event.status_code,
        key_hash=event.key_hash,
        rows=event.rows,
        features=_values(event.features),
        predictions=_values(event.predictions),
        shadows=[
            mpb.ShadowComparison(
                shadow=c.shadow,
                model=f"models/{c.model}",
                version=c.version,
                status_code=c.status_code,
                latency_seconds=_seconds(c.latency_s),
                max_abs_diff=c.max_abs_diff,
                argmax_agree=c.argmax_agree,
                has_argmax=c.has_argmax,
            )
            for c in event.shadows
        ],
        source=event.source,
        traceparent=event.traceparent,
        shadow=event.shadow,
        mirrored=event.mirrored,
        outputs=event.outputs[:MAX_OUTPUTS],
    )


def events_to_pb(events: Sequence[Event]) -> mpb.IngestEventsRequest:
    return mpb.IngestEventsRequest(events=[event_to_pb(e) for e in events])


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

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        try:
            await self._stub.RecordOutcomes(
                outcomes_to_pb(outcomes), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"monitor {self.address}: {exc.code().name}: {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from None

    async def close(self) -> None:
        await self._channel.close()


# ----------------------------------------------------------------------- metrics


class PipelineCollector(Collector):
    """`{prefix}_events_total{result}` (sent, dropped) and `{prefix}_events_buffered`,
    read from the pipeline's counters at scrape time."""

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
        yield GaugeMetricFamily(
            f"{self._prefix}_monitor_events_buffered",
            "Events waiting to be sent to the monitor.",
            value=float(pipeline.buffered),
        )


def register_pipeline_metrics(
    registry: CollectorRegistry, pipeline: EventPipeline, prefix: str
) -> PipelineCollector:
    collector = PipelineCollector(pipeline, prefix)
    registry.register(collector)
    return collector
