"""Inference's part of the payload audit log: which requests are sampled, what their records
hold (redacted inputs, values cut to the size cap, both sides shared fairly), how records
are bounded in the pipeline, how endpoint policies follow the watch feed (snapshots
included), and the records' wire form."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import pytest
from google.protobuf import json_format

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common.audit import NUMBER_WIRE_BYTES, AuditRecord, head, record_bytes
from modelhub.common.events import DROP_BUFFER_BYTES, DROP_BUFFER_FULL, EventPipeline, SendResult
from modelhub.common.monitor_sink import audit_record_to_pb, audit_records_request
from modelhub.common.registry_view import endpoint_from_pb
from modelhub.inference.audit import AuditPolicies, AuditPolicy, RequestAuditor
from modelhub.inference.deployments import audit_policy
from modelhub.inference.request import InputTensor, OutputTensor
from modelhub.inference.routing import Route


class _Sink:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def send_events(self, events: Sequence[AuditRecord]) -> SendResult:
        self.records.extend(events)
        return SendResult(len(events))

    async def send_outcomes(self, outcomes: Sequence[object]) -> int:
        return 0


def _pipeline(max_buffered: int = 1000, max_bytes: int = 64 << 20) -> EventPipeline[AuditRecord]:
    return EventPipeline(
        _Sink(),
        max_buffered=max_buffered,
        max_buffered_bytes=max_bytes,
        batch_size=10,
        flush_interval_s=60.0,
        max_outcomes=1,
        size=record_bytes,
        what="audit records",
    )


ROUTE = Route(endpoint="endpoints/e", variant="a", request_id="envoy-id")


def _auditor(
    policy: AuditPolicy | None,
    pipeline: EventPipeline[AuditRecord] | None = None,
    max_record_bytes: int = 256 << 10,
) -> RequestAuditor:
    policies = AuditPolicies()
    policies.put("endpoints/e", policy)
    return RequestAuditor(
        pipeline or _pipeline(),
        policies,
        max_record_bytes=max_record_bytes,
        rng=random.Random(3),
    )


def _record(
    auditor: RequestAuditor,
    policy: AuditPolicy,
    inputs: Sequence[InputTensor] = (),
    outputs: Sequence[OutputTensor] = (),
    **overrides: object,
) -> None:
    fields: dict[str, object] = {
        "request_id": "",
        "arrival": 1_700_000_000.0,
        "latency_s": 0.002,
        "model": "m",
        "version": 2,
        "status_code": 0,
        "status_message": "",
        "caller": "alice",
        "caller_role": "reader",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "inputs": inputs,
        "outputs": outputs,
    }
    fields.update(overrides)
    auditor.record(policy, ROUTE, **fields)  # type: ignore[arg-type]


def _queued(auditor: RequestAuditor) -> list[AuditRecord]:
    return list(auditor.pipeline._events)


def _x(values: np.ndarray, name: str = "x") -> InputTensor:
    return InputTensor(name, "FP32", tuple(values.shape), values)


# ------------------------------------------------------------------ sampling


def test_rate_one_samples_every_routed_request_and_zero_none() -> None:
    every = _auditor(AuditPolicy(1.0))
    assert all(every.sampled(ROUTE) is not None for _ in range(1000))
    assert _auditor(AuditPolicy(0.0)).sampled(ROUTE) is None  # a zero rate is not kept
    assert _auditor(None).sampled(ROUTE) is None
    # Direct calls, other endpoints and shadow copies are never recorded.
    assert every.sampled(Route()) is None
    assert every.sampled(Route(endpoint="endpoints/other", variant="a")) is None
    assert every.sampled(Route(endpoint="endpoints/e", variant="s", shadow=True)) is None


def test_a_fractional_rate_samples_about_that_fraction() -> None:
    auditor = _auditor(AuditPolicy(0.1))
    sampled = sum(auditor.sampled(ROUTE) is not None for _ in range(20_000))
    assert 1600 < sampled < 2400, sampled


# ------------------------------------------------------------------ records


def test_a_record_carries_the_request_and_redacts_named_inputs() -> None:
    policy = AuditPolicy(1.0, frozenset({"ssn"}))
    auditor = _auditor(policy)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    ssn = np.array([[123456789]], dtype=np.int64)
    y = x + 2
    _record(
        auditor,
        policy,
        [_x(x), InputTensor("ssn", "INT64", (1, 1), ssn)],
        [OutputTensor("y", "FP32", y)],
        request_id="q1",
    )
    (record,) = _queued(auditor)
    assert (record.request_id, record.endpoint, record.variant) == ("q1", "endpoints/e", "a")
    assert (record.model, record.version, record.status_code) == ("m", 2, 0)
    assert (record.caller, record.caller_role) == ("alice", "reader")
    assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert not record.truncated
    x_rec, ssn_rec = record.inputs
    assert x_rec.shape == (2, 4) and x_rec.values is not None
    assert x_rec.values.tolist() == x.ravel().tolist()
    assert ssn_rec.redacted and ssn_rec.values is None and ssn_rec.shape == (1, 1)
    (y_rec,) = record.outputs
    assert y_rec.values is not None and y_rec.values.tolist() == y.ravel().tolist()
    # The record copies what it keeps: changing the request afterwards changes nothing.
    x[:] = -1
    assert x_rec.values.tolist() == list(range(8))

    message = audit_record_to_pb(record)
    assert message.inputs[1].redacted and not message.inputs[1].data.values
    as_json = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert as_json["inputs"][0] == {
        "name": "x",
        "datatype": "FP32",
        "shape": ["2", "4"],
        "data": [float(v) for v in range(8)],
    }
    assert "123456789" not in str(message)


def test_without_an_id_in_the_body_the_record_has_envoys_request_id() -> None:
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy)
    _record(auditor, policy, [_x(np.ones((1, 4), np.float32))])
    assert _queued(auditor)[0].request_id == "envoy-id"


def test_a_failed_request_is_recorded_with_its_status_and_no_outputs() -> None:
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy)
    _record(
        auditor,
        policy,
        [_x(np.ones((1, 3), np.float32))],
        status_code=3,
        status_message="inputs[0] has shape [1, 3], the model takes [-1, 4]" + "!" * 5000,
    )
    (record,) = _queued(auditor)
    assert record.status_code == 3 and record.status_message.startswith("inputs[0] has shape")
    assert len(record.status_message) == 1024  # bounded
    assert record.outputs == []


def test_large_tensors_are_cut_to_the_cap_and_both_sides_get_a_share() -> None:
    cap = 64 << 10
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy, max_record_bytes=cap)
    big_in = np.random.default_rng(0).random((1000, 100), dtype=np.float32)  # 100k values
    big_out = np.random.default_rng(1).random((1000, 10), dtype=np.float32)
    _record(auditor, policy, [_x(big_in)], [OutputTensor("y", "FP32", big_out)])
    (record,) = _queued(auditor)
    (x_rec,), (y_rec,) = record.inputs, record.outputs
    assert record.truncated and x_rec.truncated and y_rec.truncated
    assert x_rec.values is not None and y_rec.values is not None
    # The first values, in order, and about half the cap each.
    assert x_rec.values.tolist() == big_in.ravel()[: len(x_rec.values)].tolist()
    assert y_rec.values.tolist() == big_out.ravel()[: len(y_rec.values)].tolist()
    share = cap // 2 // NUMBER_WIRE_BYTES
    assert 0.9 * share < len(x_rec.values) <= share
    assert 0.9 * share < len(y_rec.values) <= share
    # The encoded record stays within the cap.
    assert audit_record_to_pb(record).ByteSize() <= cap
    # And what the record holds in memory is bounded by the cap, not the request.
    assert record_bytes(record) < cap


def test_a_small_side_leaves_the_rest_of_the_cap_to_the_other() -> None:
    cap = 64 << 10
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy, max_record_bytes=cap)
    big_in = np.zeros((1000, 100), np.float32)
    _record(auditor, policy, [_x(big_in)], [OutputTensor("y", "FP32", np.zeros((1, 2)))])
    (record,) = _queued(auditor)
    assert not record.outputs[0].truncated
    x_values = record.inputs[0].values
    assert x_values is not None and len(x_values) > 0.9 * cap // NUMBER_WIRE_BYTES


def test_bytes_tensors_are_cut_by_their_lengths() -> None:
    values = np.empty(100, dtype=object)
    values[:] = [b"x" * 100] * 99 + [b"\xff"]
    kept, cut, used = head(values, 1000)
    assert cut and len(kept) == 9 and used <= 1000
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy, max_record_bytes=4096)
    _record(auditor, policy, [InputTensor("s", "BYTES", (100,), values)])
    (record,) = _queued(auditor)
    data = list(audit_record_to_pb(record).inputs[0].data)
    assert record.truncated and 0 < len(data) < 100 and data[0] == "x" * 100
    whole = _auditor(policy)
    _record(whole, policy, [InputTensor("s", "BYTES", (100,), values)])
    assert list(audit_record_to_pb(_queued(whole)[0]).inputs[0].data)[-1] == "\\xff"


def test_a_batch_is_the_wire_form_of_the_request() -> None:
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy)
    flags = np.array([[True, False, True]])
    counts = np.array([[1, -2, 2**40]], np.int64)
    for i in range(3):
        _record(
            auditor,
            policy,
            [InputTensor("f", "BOOL", (1, 3), flags), InputTensor("c", "INT64", (1, 3), counts)],
            [OutputTensor("y", "FP16", np.array([[0.5, 1.5]], np.float16))],
            request_id=f"r{i}",
        )
    request = mpb.IngestAuditRecordsRequest.FromString(audit_records_request(_queued(auditor)))
    assert [r.request_id for r in request.records] == ["r0", "r1", "r2"]
    record = request.records[2]
    assert (record.endpoint, record.model, record.version) == ("endpoints/e", "models/m", 2)
    assert record.time.seconds == 1_700_000_000 and record.latency_seconds == 0.002
    assert list(record.inputs[0].data) == [True, False, True]
    assert list(record.inputs[1].data) == [1.0, -2.0, float(2**40)]
    assert list(record.outputs[0].data) == [0.5, 1.5] and list(record.outputs[0].shape) == [1, 2]


def test_non_finite_numbers_become_the_json_strings() -> None:
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy)
    values = np.array([[math.nan, math.inf, -math.inf, 1.5]], np.float64)
    _record(auditor, policy, [InputTensor("x", "FP64", (1, 4), values)])
    message = audit_record_to_pb(_queued(auditor)[0])
    assert list(message.inputs[0].data) == ["NaN", "Infinity", "-Infinity", 1.5]
    json_format.MessageToJson(message)  # valid JSON


# ------------------------------------------------------------------ bounds


def test_records_past_the_buffer_bounds_are_dropped_and_counted() -> None:
    policy = AuditPolicy(1.0)
    by_count = _auditor(policy, _pipeline(max_buffered=3))
    for _ in range(5):
        _record(by_count, policy, [_x(np.ones((1, 4), np.float32))])
    assert by_count.pipeline.buffered == 3
    assert by_count.pipeline.dropped_by_reason[DROP_BUFFER_FULL] == 2

    # 200 KB records in a 1 MB buffer: 4 fit (with their overhead), the rest are dropped.
    by_bytes = _auditor(policy, _pipeline(max_bytes=1 << 20), max_record_bytes=2 << 20)
    for _ in range(10):
        _record(by_bytes, policy, [_x(np.ones((50_000,), np.float32))])
    pipeline = by_bytes.pipeline
    assert pipeline.buffered == 5 and pipeline.buffered_bytes <= 1 << 20
    assert pipeline.dropped_by_reason[DROP_BUFFER_BYTES] == 5


async def test_queued_records_reach_the_sink() -> None:
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy)
    for i in range(3):
        _record(auditor, policy, [_x(np.ones((1, 4), np.float32))], request_id=f"r{i}")
    await auditor.pipeline.flush()
    sink = auditor.pipeline._sink
    assert isinstance(sink, _Sink)
    assert [r.request_id for r in sink.records] == ["r0", "r1", "r2"]
    assert auditor.pipeline.sent == 3 and auditor.pipeline.buffered_bytes == 0


# ------------------------------------------------------------------ policies


def test_policies_follow_puts_deletes_and_snapshots() -> None:
    policies = AuditPolicies()
    policies.put("endpoints/a", AuditPolicy(1.0))
    policies.put("endpoints/b", AuditPolicy(0.5))
    policies.put("endpoints/b", AuditPolicy(0.0))  # turned off
    assert policies.get("endpoints/b") is None and len(policies) == 1
    policies.begin_snapshot()
    policies.put("endpoints/c", AuditPolicy(0.2))
    # Until the snapshot is complete, the policies in force stay in force.
    assert policies.get("endpoints/a") is not None and policies.get("endpoints/c") is None
    policies.end_snapshot()
    # The snapshot replaced them: `a` was deleted while the watch was away.
    assert policies.get("endpoints/a") is None
    assert policies.get("endpoints/c") == AuditPolicy(0.2)
    policies.delete("endpoints/c")
    assert len(policies) == 0


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan])
def test_a_watched_endpoint_that_records_nothing_has_no_policy(rate: float) -> None:
    endpoint = rpb.Endpoint(name="endpoints/e", audit=rpb.AuditPolicy(sample_rate=rate))
    assert audit_policy(endpoint_from_pb(endpoint)) is None
    assert audit_policy(endpoint_from_pb(rpb.Endpoint(name="endpoints/e"))) is None
    endpoint.audit.sample_rate = 1.0
    endpoint.audit.redact_inputs.append("ssn")
    assert audit_policy(endpoint_from_pb(endpoint)) == AuditPolicy(1.0, frozenset({"ssn"}))


def test_a_request_without_any_id_gets_one() -> None:
    policy = AuditPolicy(1.0)
    auditor = _auditor(policy)
    bare = Route(endpoint="endpoints/e", variant="a")
    for _ in range(2):
        auditor.record(
            policy,
            bare,
            request_id="",
            arrival=1.0,
            latency_s=0.0,
            model="m",
            version=1,
            status_code=0,
            status_message="",
            caller="anonymous",
            caller_role="admin",
            trace_id="",
            inputs=(),
            outputs=(),
        )
    first, second = (r.request_id for r in _queued(auditor))
    assert len(first) == 32 and first != second
