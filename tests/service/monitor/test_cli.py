"""The monitor's reports through `modelhub stats|drift|experiment|shadows|alerts`: tables
by default, JSON with numbers for scripts, against a real monitor."""

from __future__ import annotations

import json

import numpy as np

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from tests.cli import run_cli

from .conftest import Service
from .helpers import inference_event, ingest


async def _cli(service: Service, *args: str) -> tuple[int, str, str]:
    return await run_cli(*args, "--monitor", service.app.runtime.address)


def _rows(out: str, title: str = "") -> list[list[str]]:
    """The rows of a table (the one under `title:` when given), split on runs of spaces."""
    text = out.split(f"{title}:\n")[1].split("\n\n")[0] if title else out
    return [line.split("  ") for line in text.splitlines()]


def _cells(row: list[str]) -> list[str]:
    return [cell.strip() for cell in row if cell.strip()]


async def test_stats_table_and_json(service: Service) -> None:
    events = [
        inference_event(0.01 * (1 + i % 5), endpoint="endpoints/fraud", variant="champion")
        for i in range(40)
    ] + [
        inference_event(0.02, endpoint="endpoints/fraud", variant="challenger", status_code=14)
        for _ in range(10)
    ]
    await ingest(service.stub, events)
    code, out, err = await _cli(service, "stats", "--endpoint", "fraud")
    assert code == 0, err
    header, *rows = [_cells(r) for r in _rows(out)]
    assert header[:8] == [
        "MODEL", "VERSION", "ENDPOINT", "VARIANT", "SOURCE", "REQUESTS", "ERRORS", "REQ/S",
    ]  # fmt: skip
    by_variant = {row[3]: row for row in rows}
    assert by_variant["champion"][:7] == ["fraud", "1", "fraud", "champion", "router", "40", "0"]
    assert by_variant["challenger"][5:7] == ["10", "10"]
    assert by_variant["challenger"][header.index("ERROR%")] == "100.0%"

    code, out, err = await _cli(service, "stats", "--json", "--endpoint", "fraud")
    assert code == 0, err
    stats = {s["key"]["variant"]: s for s in json.loads(out)["stats"]}
    assert stats["champion"]["requests"] == 40  # uint64 as a number
    assert stats["challenger"]["status_codes"] == {"UNAVAILABLE": 10}


async def test_drift_report_table(service: Service) -> None:
    rng = np.random.default_rng(0)
    await service.stub.SetBaseline(
        pb.SetBaselineRequest(
            model="models/fraud",
            version=1,
            samples=pb.SampleData(
                features=[
                    pb.FeatureSample(name="amount", numbers=rng.normal(100, 15, 3000).tolist()),
                    pb.FeatureSample(name="age", numbers=rng.normal(40, 10, 3000).tolist()),
                ]
            ),
        )
    )
    now = service.clock()
    events = [
        inference_event(
            0.01,
            time={"seconds": int(now - 1200 + i)},
            features=[
                pb.FeatureValue(name="amount", number=float(rng.normal(100, 15))),
                pb.FeatureValue(name="age", number=float(rng.normal(55, 10))),
            ],
        )
        for i in range(1000)
    ]
    await ingest(service.stub, events)
    code, out, err = await _cli(service, "drift", "fraud", "--version", "1", "--window", "3600")
    assert code == 0, err
    assert "DRIFTED     age" in out and "BASELINE    monitor" in out
    header, *rows = [_cells(r) for r in _rows(out, "FEATURES")]
    assert header == ["FEATURE", "PSI", "JS", "KS", "CHI2 P", "LIVE", "DRIFT", "REASONS"]
    by_name = {row[0]: row for row in rows}
    assert by_name["age"][6] == "DRIFTED" and float(by_name["age"][1]) > 0.2
    assert by_name["amount"][6] == "ok" and by_name["amount"][5] == "1000"

    code, out, err = await _cli(
        service, "drift", "fraud", "--version", "1", "--window", "3600", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["drifted"] == ["age"] and report["version"] == 1


async def test_experiment_shadows_and_alerts_tables(service: Service) -> None:
    events, outcomes = [], []
    for variant, converted in (("champion", 10), ("challenger", 30)):
        for i in range(100):
            request_id = f"{variant}-{i}"
            events.append(
                inference_event(
                    0.02,
                    endpoint="endpoints/fraud",
                    variant=variant,
                    request_id=request_id,
                    shadows=[
                        pb.ShadowComparison(
                            shadow="next",
                            model="models/fraud",
                            version=2,
                            latency_seconds=0.05,
                            max_abs_diff=0.001 * i,
                            argmax_agree=i % 4 != 0,
                            has_argmax=True,
                        )
                    ],
                )
            )
            if i < converted:
                outcomes.append(pb.Outcome(request_id=request_id, value=1.0))
    await ingest(service.stub, events)
    await service.stub.RecordOutcomes(pb.RecordOutcomesRequest(outcomes=outcomes))

    code, out, err = await _cli(service, "experiment", "fraud", "--window", "3600")
    assert code == 0, err
    variants = {r[0]: r for r in [_cells(r) for r in _rows(out, "VARIANTS")][1:]}
    assert variants["challenger"][1:3] == ["fraud:1", "100"]
    assert variants["challenger"][6] == "30.0%" and variants["champion"][6] == "10.0%"
    [_, comparison] = [_cells(r) for r in _rows(out, "COMPARISONS")]
    assert comparison[0] in ("challenger vs champion", "champion vs challenger")
    assert comparison[-1] == "yes"

    code, out, err = await _cli(service, "shadows", "fraud", "--window", "3600")
    assert code == 0, err
    header, row = [_cells(r) for r in _rows(out.split("\n\n", 1)[1])]
    assert row[:5] == ["next", "fraud:2", "200", "0", "75.0%"]
    assert row[header.index("DIFF MAX")] == "0.099"
    code, out, err = await _cli(service, "--json", "shadows", "fraud", "--window", "3600")
    assert json.loads(out)["shadows"][0]["compared"] == 200

    code, out, err = await _cli(service, "alerts")
    assert code == 0 and out.strip() == "no pending or firing alerts", err
    await service.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(
            rule_id="slow",
            rule=pb.AlertRule(
                display_name="fraud latency",
                metric="latency_p50",
                series=pb.SeriesKey(endpoint="endpoints/fraud"),
                comparator=pb.AlertRule.GREATER_THAN,
                threshold=0.01,
                window_seconds=300,
            ),
        )
    )
    await service.app.monitor.alerts.evaluate()
    code, out, err = await _cli(service, "alerts")
    assert code == 0, err
    header, row = [_cells(r) for r in _rows(out)]
    assert header == ["RULE", "NAME", "STATE", "METRIC", "VALUE", "THRESHOLD", "SINCE"]
    assert row[:4] == ["slow", "fraud latency", "FIRING", "latency_p50"]


async def test_a_monitor_that_refuses_says_why(service: Service) -> None:
    code, _, err = await _cli(service, "drift", "nobody", "--version", "1")
    assert code == 1
    assert err.startswith("error: ") and ("NOT_FOUND" in err or "FAILED_PRECONDITION" in err)
