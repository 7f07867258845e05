"""The monitor as an `EventSink`: batches of events over `IngestEvents`, outcomes over
`RecordOutcomes`, payload audit records over `IngestAuditRecords` (`AuditSink`), and the
pipelines' counters as Prometheus metrics. Every call is bounded by a timeout, so an
unreachable monitor costs the sender task one timeout per flush, and the data path
nothing."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import struct_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from modelhub.common.audit import AuditRecord, AuditTensor
from modelhub.common.channels import bearer, service_channel
from modelhub.common.errors import UnavailableError
from modelhub.common.events import MAX_OUTPUTS, Event, EventPipeline, Outcome, SendResult
from modelhub.common.settings import TlsSettings
from modelhub.common.timestamps import set_timestamp, timestamp_of

# ------------------------------------------------------------------ domain → monitor


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
    set_timestamp(message.time, event.time)
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
    if event.traceparent:
        message.traceparent = event.traceparent
    _fill_data_and_copies(message, event)


def _fill_data_and_copies(message: mpb.InferenceEvent, event: Event) -> None:
    """The part of `_fill` most events leave empty: sampled feature and prediction values,
    shadow comparisons, and what marks a shadow copy or a mirrored primary."""
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
                request_id=o.request_id, value=o.value, kind=o.kind, time=timestamp_of(o.time)
            )
            for o in outcomes
        ]
    )


# ------------------------------------------------------------------ audit records
#
# Records are encoded straight to the wire form of `IngestAuditRecordsRequest`: each
# tensor's values as the bytes of its `google.protobuf.ListValue`, built for the whole array
# at once with numpy (no protobuf object per value: a record of thousands of numbers costs
# microseconds, not milliseconds, of the event loop that also serves requests). Fields of a
# message may come in any order on the wire, and repeated fields concatenate, so a
# record's bytes are its other fields (serialized by protobuf) followed by its tensors.

_LENGTH_DELIMITED = 2


def _tag(message: type[Message], field: str) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number
    return _varint(number << 3 | _LENGTH_DELIMITED)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [bytes((i,)) for i in range(0x80)]
_RECORDS = _tag(mpb.IngestAuditRecordsRequest, "records")
_INPUTS = _tag(mpb.AuditRecord, "inputs")
_OUTPUTS = _tag(mpb.AuditRecord, "outputs")
_DATA = _tag(mpb.AuditTensor, "data")

# One `google.protobuf.Value` inside a ListValue: the ListValue's `values` field (1,
# length-delimited), the Value's length, then its `number_value` (2, 64-bit) or
# `bool_value` (4, varint).
_WIRE_NUMBER = np.dtype([("field", "u1"), ("length", "u1"), ("tag", "u1"), ("value", "<f8")])
_WIRE_BOOL = np.dtype([("field", "u1"), ("length", "u1"), ("tag", "u1"), ("value", "u1")])
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _pattern(dtype: np.dtype, length: int, tag: int) -> np.ndarray:
    """The bytes of one value's framing (its value zero), as uint8."""
    one = np.zeros(1, dtype)
    one["field"], one["length"], one["tag"] = 0x0A, length, tag
    return one.view(np.uint8)


# Framing of 4096 values, copied as plain bytes (a memcpy; copying a structured array goes
# value by value); more values tile the pattern.
_TEMPLATE_VALUES = 4096
_NUMBERS = np.tile(_pattern(_WIRE_NUMBER, 9, 0x11), _TEMPLATE_VALUES)
_BOOLS = np.tile(_pattern(_WIRE_BOOL, 2, 0x20), _TEMPLATE_VALUES)


def _framed(template: np.ndarray, dtype: np.dtype, values: np.ndarray) -> bytes:
    count = len(values)
    if count <= _TEMPLATE_VALUES:
        raw = template[: count * dtype.itemsize].copy()
    else:
        raw = np.tile(template[: dtype.itemsize], count)
    wire = raw.view(dtype)
    wire["value"] = values
    return wire.tobytes()


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _values_bytes(values: np.ndarray) -> bytes:
    """The ListValue of `values` (flat), serialized: numbers as doubles (NaN and infinities
    as the strings proto3 JSON uses for them), booleans, strings (BYTES decoded as UTF-8,
    invalid bytes escaped)."""
    kind = values.dtype.kind
    if kind == "b":
        return _framed(_BOOLS, _WIRE_BOOL, values)
    if kind in "iu" or (kind == "f" and bool(np.isfinite(values).all())):
        return _framed(_NUMBERS, _WIRE_NUMBER, values)
    slow = struct_pb2.ListValue()
    if kind == "f":
        slow.extend(
            [
                v if math.isfinite(v) else _NON_FINITE.get(v, "NaN")
                for v in values.astype(np.float64).tolist()
            ]
        )
    else:
        slow.extend(
            [
                v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
                for v in values.tolist()
            ]
        )
    return slow.SerializeToString()


def _tensor_bytes(tensor: AuditTensor) -> bytes:
    head = mpb.AuditTensor(
        name=tensor.name,
        datatype=tensor.datatype,
        shape=tensor.shape,
        redacted=tensor.redacted,
        truncated=tensor.truncated,
    ).SerializeToString()
    if tensor.redacted or tensor.values is None or not len(tensor.values):
        return head
    return head + _delimited(_DATA, _values_bytes(tensor.values))


def audit_record_bytes(record: AuditRecord) -> bytes:
    """A record as a serialized `modelhub.monitor.v1.AuditRecord`."""
    head = mpb.AuditRecord(
        request_id=record.request_id,
        time=timestamp_of(record.time),
        trace_id=record.trace_id,
        caller=record.caller,
        caller_role=record.caller_role,
        endpoint=record.endpoint,
        variant=record.variant,
        model=f"models/{record.model}" if record.model else "",
        version=record.version,
        status_code=record.status_code,
        status_message=record.status_message,
        latency_seconds=_seconds(record.latency_s),
        truncated=record.truncated,
    ).SerializeToString()
    parts = [head]
    parts.extend(_delimited(_INPUTS, _tensor_bytes(t)) for t in record.inputs)
    parts.extend(_delimited(_OUTPUTS, _tensor_bytes(t)) for t in record.outputs)
    return b"".join(parts)


def audit_records_request(records: Sequence[AuditRecord]) -> bytes:
    """A serialized `IngestAuditRecordsRequest` carrying `records`."""
    return b"".join(_delimited(_RECORDS, audit_record_bytes(r)) for r in records)


def audit_record_to_pb(record: AuditRecord) -> mpb.AuditRecord:
    """A record as a message (the same bytes, parsed)."""
    return mpb.AuditRecord.FromString(audit_record_bytes(record))


# ------------------------------------------------------------------------- the sink


_INGEST_AUDIT = f"/{mpb.DESCRIPTOR.services_by_name['MonitorService'].full_name}/IngestAuditRecords"


class MonitorSink:
    """Sends events and outcomes to the monitor service."""

    def __init__(
        self,
        address: str,
        *,
        token: str = "",
        timeout_s: float = 5.0,
        max_message_bytes: int = 64 << 20,
        tls: TlsSettings | None = None,
    ) -> None:
        self.address = address
        self._channel = service_channel(address, max_message_bytes, tls)
        self._stub = mpb_grpc.MonitorServiceStub(self._channel)
        self._metadata = bearer(token)
        self._timeout = timeout_s
        self._ingest_audit: Any = None

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

    async def send_audit_records(self, records: Sequence[AuditRecord]) -> SendResult:
        if self._ingest_audit is None:
            # The request goes out as the bytes `audit_records_request` encoded.
            self._ingest_audit = self._channel.unary_unary(
                _INGEST_AUDIT,
                request_serializer=None,
                response_deserializer=mpb.IngestAuditRecordsResponse.FromString,
            )
        try:
            response = await self._ingest_audit(
                audit_records_request(records), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"monitor {self.address}: {exc.code().name}: {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from None
        return SendResult(response.accepted, response.rejected)

    async def close(self) -> None:
        await self._channel.close()


class AuditSink:
    """The monitor as the sink of an audit record pipeline (`EventPipeline[AuditRecord]`),
    on a `MonitorSink`'s channel."""

    def __init__(self, monitor: MonitorSink) -> None:
        self._monitor = monitor

    async def send_events(self, events: Sequence[AuditRecord]) -> SendResult:
        return await self._monitor.send_audit_records(events)

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        return 0  # an audit pipeline carries no outcomes


# ----------------------------------------------------------------------- metrics


class PipelineCollector(Collector):
    """`{prefix}_{name}_total{result}` (sent, dropped), `{prefix}_{name}_dropped_total{reason}`,
    `{prefix}_{name}_buffered` and `{prefix}_{name}_buffered_bytes`, read from the
    pipeline's counters at scrape time (`name`: `monitor_events`, or `audit_records` for
    the payload audit log; `what` names the items in the help texts)."""

    def __init__(
        self,
        pipeline: EventPipeline[Any],
        prefix: str,
        name: str = "monitor_events",
        what: str = "events",
    ) -> None:
        self._pipeline = pipeline
        self._name = f"{prefix}_{name}"
        self._what = what

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        pipeline = self._pipeline
        what = self._what
        events = CounterMetricFamily(
            self._name,
            f"{what.capitalize()} for the monitor: sent (accepted by it) or dropped (buffer "
            "full, monitor unreachable, or refused by it).",
            labels=("result",),
        )
        events.add_metric(["sent"], float(pipeline.sent))
        events.add_metric(["dropped"], float(pipeline.dropped))
        yield events
        dropped = CounterMetricFamily(
            f"{self._name}_dropped",
            f"{what.capitalize()} dropped, by reason: buffer_full (max {what} waiting), "
            f"buffer_bytes (the waiting {what}' estimated memory at its bound), "
            "monitor_unreachable, monitor_refused.",
            labels=("reason",),
        )
        for reason, count in pipeline.dropped_by_reason.items():
            dropped.add_metric([reason], float(count))
        yield dropped
        yield GaugeMetricFamily(
            f"{self._name}_buffered",
            f"{what.capitalize()} waiting to be sent to the monitor.",
            value=float(pipeline.buffered),
        )
        yield GaugeMetricFamily(
            f"{self._name}_buffered_bytes",
            f"Estimated memory of the {what} waiting to be sent and of the batch in flight.",
            value=float(pipeline.buffered_bytes),
        )


def register_pipeline_metrics(
    registry: CollectorRegistry,
    pipeline: EventPipeline[Any],
    prefix: str,
    name: str = "monitor_events",
    what: str = "events",
) -> PipelineCollector:
    collector = PipelineCollector(pipeline, prefix, name, what)
    registry.register(collector)
    return collector
