"""Bad input gets INVALID_ARGUMENT with an actionable message and field violations, and
nothing is stored half-way."""

from __future__ import annotations

import math

import grpc
import pytest

from modelhub.api.common.v1 import types_pb2
from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.common.status import bad_request

from .conftest import Service
from .helpers import inference_event, ingest


def _violations(error: grpc.aio.AioRpcError) -> list[str]:
    bad = bad_request(error)
    return [v.field for v in bad.field_violations] if bad is not None else []


async def _requests(service: Service) -> int:
    stats = await service.stub.GetStats(pb.GetStatsRequest(window_seconds=3600))
    return stats.requests


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        (inference_event(math.nan), "events[1].latency_seconds", "must be finite"),
        (inference_event(-0.2), "events[1].latency_seconds", "non-negative"),
        (inference_event(0.1, queue_seconds=-1.0), "events[1].queue_seconds", "non-negative"),
        (inference_event(0.1, version=-3), "events[1].version", "positive"),
        (inference_event(model="fraud"), "events[1].model", "models/{model}"),
    ],
)
async def test_strict_batch_with_a_bad_event_is_refused_whole(
    service: Service, bad: pb.InferenceEvent, field: str, words: str
) -> None:
    # A first, valid batch on the same stream is kept; the bad batch is refused whole.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest(
            service.stub,
            [inference_event(0.01)],
            [inference_event(0.01), bad, inference_event(0.02)],
            strict=True,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (err.value.details() or "")
    assert "nothing was stored" in (err.value.details() or "")
    assert "1 events of earlier batches in this stream were kept" in (err.value.details() or "")
    assert _violations(err.value) == [field]
    assert await _requests(service) == 1


async def test_lenient_batch_counts_rejections_with_reasons(service: Service) -> None:
    reply = await ingest(
        service.stub,
        [
            inference_event(0.01),
            inference_event(math.nan),
            inference_event(0.01, features=[pb.FeatureValue(name="x")]),
            inference_event(0.02),
        ],
    )
    assert (reply.accepted, reply.rejected) == (2, 2)
    assert [r.split(":")[0] for r in reply.reject_reasons] == [
        "events[1].latency_seconds",
        "events[2].features[0]",
    ]
    assert await _requests(service) == 2


def _rule(**fields: object) -> pb.AlertRule:
    base: dict[str, object] = {
        "display_name": "errors",
        "metric": "error_rate",
        "series": pb.SeriesKey(model="models/fraud"),
        "comparator": pb.AlertRule.GREATER_THAN,
        "threshold": 0.1,
        "window_seconds": 60,
    }
    base.update(fields)
    return pb.AlertRule(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        (_rule(metric="error_ratio"), "rule.metric", "unknown metric 'error_ratio'"),
        (_rule(threshold=math.nan), "rule.threshold", "must be finite"),
        (_rule(threshold=math.inf), "rule.threshold", "must be finite"),
        (_rule(threshold=3.0), "rule.threshold", "[0, 1]"),
        (_rule(comparator=pb.AlertRule.COMPARATOR_UNSPECIFIED), "rule.comparator", "required"),
        (_rule(window_seconds=30), "rule.window_seconds", "60, 300, 3600"),
        (_rule(for_seconds=-5), "rule.for_seconds", "[0, 86400]"),
    ],
)
async def test_bad_rules_are_refused_and_nothing_is_stored(
    service: Service, rule: pb.AlertRule, field: str, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.CreateAlertRule(pb.CreateAlertRuleRequest(rule_id="r", rule=rule))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (err.value.details() or "")
    assert field in _violations(err.value)
    listed = await service.stub.ListAlertRules(pb.ListAlertRulesRequest())
    assert list(listed.rules) == []
    assert service.app.monitor.alerts.alerts() == []


async def test_bad_update_leaves_the_rule_as_it_was(service: Service) -> None:
    created = await service.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(rule_id="errors", rule=_rule())
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.UpdateAlertRule(
            pb.UpdateAlertRuleRequest(rule=_rule(name="rules/errors", threshold=math.nan))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stored = await service.stub.GetAlertRule(pb.GetAlertRuleRequest(name="rules/errors"))
    assert stored == created


async def test_bad_outcomes_baselines_and_windows(service: Service) -> None:
    await ingest(service.stub, [inference_event(request_id="r1")])
    cases = [
        service.stub.RecordOutcomes(
            pb.RecordOutcomesRequest(
                outcomes=[
                    pb.Outcome(request_id="r1", value=1.0),
                    pb.Outcome(request_id="r1", value=math.nan),
                ]
            )
        ),
        service.stub.SetBaseline(
            pb.SetBaselineRequest(
                model="models/fraud",
                version=1,
                profile=types_pb2.DataProfile(
                    features=[
                        types_pb2.FeatureProfile(
                            name="x",
                            kind=types_pb2.FeatureProfile.NUMERIC,
                            bin_edges=[0, 1, 1],
                            counts=[1, 1],
                        )
                    ]
                ),
            )
        ),
        service.stub.SetBaseline(pb.SetBaselineRequest(model="models/fraud", version=1)),
        service.stub.GetStats(pb.GetStatsRequest(window_seconds=120)),
        service.stub.GetDriftReport(pb.GetDriftReportRequest(model="fraud", version=1)),
        service.stub.GetExperimentReport(pb.GetExperimentReportRequest(endpoint="e")),
        service.stub.ListAlertRules(pb.ListAlertRulesRequest(page_token="nope")),
    ]
    for call in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    # The outcome batch was refused whole: r1 can still be attributed, once.
    stats = await service.stub.GetStats(pb.GetStatsRequest())
    assert stats.outcomes == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.GetBaseline(pb.GetBaselineRequest(model="models/fraud", version=1))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
