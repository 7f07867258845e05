"""Alert rule validation, storage through the Monitor, updates with masks and etags."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from modelhub.common.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.rules import AlertRule, Comparator, rule_id_of
from modelhub.monitor.series import SeriesKey


def rule(**changes: object) -> AlertRule:
    base = AlertRule(
        rule_id="",
        display_name="fraud errors",
        metric="error_rate",
        series=SeriesKey(model="models/fraud"),
        comparator=Comparator.GREATER_THAN,
        threshold=0.05,
        window_s=60,
        for_s=30.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (rule(metric="errors"), "rule.metric", "unknown metric 'errors'"),
        (rule(threshold=math.nan), "rule.threshold", "finite"),
        (rule(threshold=1.5), "rule.threshold", "fraction"),
        (rule(metric="latency_p99", threshold=-1.0), "rule.threshold", "never negative"),
        (rule(comparator=None), "rule.comparator", "is required"),
        (rule(window_s=120), "rule.window_seconds", "one of 60, 300, 3600"),
        (rule(for_s=-1.0), "rule.for_seconds", "[0, 86400]"),
        (rule(display_name=" "), "rule.display_name", "required"),
        (rule(webhook_url="ftp://x"), "rule.webhook_url", "http"),
        (rule(series=SeriesKey(model="fraud")), "rule.series.model", "models/{model}"),
        (rule(metric="drift_psi_max"), "rule.series", "series.version"),
        (rule(metric="shadow_disagreement"), "rule.series.endpoint", "needs an endpoint"),
    ],
)
async def test_invalid_rules_are_refused_and_nothing_is_stored(
    monitor: Monitor, bad: AlertRule, field: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as err:
        await monitor.create_rule("r1", bad)
    assert field in [v.field for v in err.value.violations]
    assert await monitor.store.list_rules() == []


async def test_every_problem_is_reported_at_once(monitor: Monitor) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        await monitor.create_rule("r1", rule(metric="nope", threshold=math.inf, window_s=7))
    assert [v.field for v in err.value.violations] == [
        "rule.metric",
        "rule.threshold",
        "rule.window_seconds",
    ]


async def test_rule_ids_and_names(monitor: Monitor) -> None:
    with pytest.raises(InvalidArgumentError, match="rule_id"):
        await monitor.create_rule("Bad_Id", rule())
    created = await monitor.create_rule("", rule(window_s=0))
    assert created.rule_id.startswith("rule-") and created.window_s == 300
    assert rule_id_of("rules/abc") == "abc"
    with pytest.raises(InvalidArgumentError, match="rules/"):
        rule_id_of("alerts/abc")
    with pytest.raises(AlreadyExistsError):
        await monitor.create_rule(created.rule_id, rule())


async def test_update_with_mask_and_etag(monitor: Monitor) -> None:
    created = await monitor.create_rule("errors", rule())
    patch = rule(threshold=0.2, display_name="ignored")
    updated = await monitor.update_rule(patch, "rules/errors", ["threshold"])
    assert updated.threshold == 0.2 and updated.display_name == "fraud errors"
    assert updated.etag != created.etag
    assert (await monitor.get_rule("rules/errors")).threshold == 0.2
    with pytest.raises(ConflictError):
        await monitor.update_rule(rule(etag=created.etag), "rules/errors", ["threshold"])
    with pytest.raises(InvalidArgumentError, match="update_mask"):
        await monitor.update_rule(rule(), "rules/errors", ["create_time"])
    # An invalid result stores nothing.
    with pytest.raises(InvalidArgumentError, match="metric"):
        await monitor.update_rule(rule(metric="bogus"), "rules/errors", ["metric"])
    assert (await monitor.get_rule("rules/errors")).metric == "error_rate"
    await monitor.delete_rule("rules/errors")
    with pytest.raises(NotFoundError):
        await monitor.get_rule("rules/errors")


async def test_list_pages(monitor: Monitor) -> None:
    for i in range(5):
        await monitor.create_rule(f"r{i}", rule())
    page, token = await monitor.list_rules(2, "")
    names = [r.rule_id for r in page]
    while token:
        page, token = await monitor.list_rules(2, token)
        names += [r.rule_id for r in page]
    assert names == ["r0", "r1", "r2", "r3", "r4"]
    with pytest.raises(InvalidArgumentError, match="page_token"):
        await monitor.list_rules(2, "garbage")
    with pytest.raises(InvalidArgumentError, match="page_size"):
        await monitor.list_rules(-1, "")
