"""A newer sender's messages reach an older monitor: fields its schema does not know are
ignored (proto3's rule), at every depth and on every RPC, while the fields it knows are
validated as usual."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
import pytest
from google.protobuf.message import Message

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.common.status import bad_request

from .conftest import Service
from .helpers import inference_event

M = TypeVar("M", bound=Message)

# Field 4242 (a string, "v1.3") exists in no version of the schema: what a sender built
# against a newer one adds.
_UNKNOWN = bytes([0x92, 0x89, 0x02, 0x04]) + b"v1.3"


def _newer(message: M) -> M:
    """`message` as a newer sender writes it: with a field this schema does not know."""
    parsed = type(message).FromString(message.SerializeToString() + _UNKNOWN)
    assert parsed.ByteSize() > message.ByteSize()  # the unknown field travels
    return parsed


async def _stream(*requests: pb.IngestEventsRequest) -> AsyncIterator[pb.IngestEventsRequest]:
    for request in requests:
        yield request


async def test_events_with_unknown_fields_are_accepted(service: Service) -> None:
    nested = inference_event(0.02, request_id="r2")
    nested.features.append(_newer(pb.FeatureValue(name="amount", number=12.5)))
    nested.shadows.append(
        _newer(pb.ShadowComparison(shadow="s", model="models/fraud", version=2, max_abs_diff=0.1))
    )
    batch = pb.IngestEventsRequest(
        events=[_newer(inference_event(0.01, request_id="r1")), nested], strict=True
    )
    reply = await service.stub.IngestEvents(_stream(_newer(batch)))
    assert (reply.accepted, reply.rejected, list(reply.reject_reasons)) == (2, 0, [])
    stats = await service.stub.GetStats(pb.GetStatsRequest(window_seconds=3600))
    assert stats.requests == 2

    # Other RPCs too: an outcome and an alert rule from a newer client.
    outcomes = await service.stub.RecordOutcomes(
        _newer(pb.RecordOutcomesRequest(outcomes=[_newer(pb.Outcome(request_id="r1", value=1))]))
    )
    assert outcomes.attributed == 1
    rule = pb.AlertRule(
        display_name="errors",
        metric="error_rate",
        series=_newer(pb.SeriesKey(model="models/fraud")),
        comparator=pb.AlertRule.GREATER_THAN,
        threshold=0.1,
        window_seconds=60,
    )
    created = await service.stub.CreateAlertRule(
        _newer(pb.CreateAlertRuleRequest(rule_id="errors", rule=_newer(rule)))
    )
    assert created.name == "rules/errors" and created.threshold == pytest.approx(0.1)


async def test_known_fields_of_a_newer_senders_event_are_still_validated(
    service: Service,
) -> None:
    batch = pb.IngestEventsRequest(
        events=[_newer(inference_event(0.01)), _newer(inference_event(math.nan))], strict=True
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.IngestEvents(_stream(_newer(batch)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be finite" in (err.value.details() or "")
    bad = bad_request(err.value)
    assert bad is not None
    assert [v.field for v in bad.field_violations] == ["events[1].latency_seconds"]
    stats = await service.stub.GetStats(pb.GetStatsRequest(window_seconds=3600))
    assert stats.requests == 0

    bad_rule = pb.AlertRule(metric="error_ratio", comparator=pb.AlertRule.GREATER_THAN)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.CreateAlertRule(
            _newer(pb.CreateAlertRuleRequest(rule_id="r", rule=_newer(bad_rule)))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown metric 'error_ratio'" in (err.value.details() or "")
