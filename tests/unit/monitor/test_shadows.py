"""Shadow reports: agreement rate, difference distribution, latency versus the primary."""

from __future__ import annotations

import numpy as np
import pytest

from modelhub.monitor.events import ShadowResult
from modelhub.monitor.monitor import Monitor

from .helpers import event


def test_shadow_report_and_disagreement(monitor: Monitor, clock) -> None:
    rng = np.random.default_rng(0)
    diffs = rng.exponential(0.01, 1_000)
    events = []
    for i in range(1_000):
        e = event(0.02, endpoint="endpoints/fraud", variant="champion")
        e.shadows = [
            ShadowResult(
                "candidate",
                "models/fraud",
                3,
                status_code=14 if i % 100 == 0 else 0,  # 1% of shadow calls fail
                latency_s=0.03,
                max_abs_diff=float(diffs[i]),
                argmax_agree=i % 10 != 0,  # 10% disagree
                has_argmax=True,
            )
        ]
        events.append(e)
    assert monitor.ingest(events).accepted == 1_000
    [summary] = monitor.shadow_report("endpoints/fraud", 3600)
    assert (summary.shadow, summary.model, summary.version) == ("candidate", "models/fraud", 3)
    assert summary.compared == 1_000 and summary.failed == 10
    assert summary.argmax_compared == 990
    ok = np.array([i for i in range(1_000) if i % 100 != 0])
    assert summary.agreement_rate == pytest.approx(np.mean(ok % 10 != 0))
    assert summary.max_abs_diff_p50 == pytest.approx(
        np.quantile(diffs[ok], 0.5, method="lower"), rel=0.01
    )
    assert summary.max_abs_diff_max == pytest.approx(diffs[ok].max())
    assert summary.shadow_latency.p50 == pytest.approx(0.03, rel=0.01)
    assert summary.primary_latency.p50 == pytest.approx(0.02, rel=0.01)
    assert summary.latency_delta_mean == pytest.approx(0.01)
    disagreement = monitor.shadows.disagreement("endpoints/fraud", "", clock(), 300)
    assert disagreement == pytest.approx(1 - summary.agreement_rate)
    assert monitor.shadow_report("endpoints/other", 3600) == []
