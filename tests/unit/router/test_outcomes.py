"""Outcomes are validated before they are forwarded; the router's counters are exported."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.events import OUTCOME_KINDS
from modelhub.router.metrics import RouterCollector
from modelhub.router.outcomes import validated
from modelhub.router.xds import ConfigWriter


def test_valid_outcome_defaults_to_a_conversion() -> None:
    outcome = validated("r1", 1.0, "")
    assert (outcome.request_id, outcome.value, outcome.kind) == ("r1", 1.0, "conversion")
    assert outcome.time > 0
    assert all(validated("r1", 0.5, kind).kind == kind for kind in OUTCOME_KINDS)


@pytest.mark.parametrize(
    ("request_id", "value", "kind", "field"),
    [
        ("", 1.0, "", "request_id"),
        ("r1", float("nan"), "", "value"),
        ("r1", float("inf"), "", "value"),
        ("r1", 1.0, "click", "kind"),
    ],
)
def test_invalid_outcomes_say_which_field(
    request_id: str, value: float, kind: str, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validated(request_id, value, kind)
    assert [v.field for v in caught.value.violations] == [field]


def test_collector_exports_revision_and_write_counters(tmp_path: Path) -> None:
    writer = ConfigWriter(tmp_path, warm_s=0)
    writer.writes, writer.errors = 3, 1
    registry = CollectorRegistry()
    registry.register(RouterCollector(writer, lambda: 42))
    assert registry.get_sample_value("modelhub_router_revision") == 42
    assert registry.get_sample_value("modelhub_router_config_writes_total") == 3
    assert registry.get_sample_value("modelhub_router_config_write_errors_total") == 1
