"""Memory stays bounded: series, samples, request ids and shadows all have caps; what does
not fit is dropped and counted. How much memory that is, and that it plateaus, is measured
by `bench/monitor_memory.py --traced` (1M events), not asserted here."""

from __future__ import annotations

import random

from modelhub.monitor.clock import ManualClock
from modelhub.monitor.events import Event, ShadowResult
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore


def _events(n: int, start: int, clock: ManualClock, rng: random.Random) -> list[Event]:
    out = []
    for i in range(start, start + n):
        out.append(
            Event(
                model=f"models/m{i % 50}",  # 50 models × 4 variants: more series than allowed
                version=1 + i % 3,
                latency_s=rng.lognormvariate(-4, 1),
                time=clock(),
                request_id=f"req-{i}",
                endpoint="endpoints/e",
                variant=f"v{i % 4}",
                source="router",
                features=[(f"f{j}", rng.random()) for j in range(8)]
                + [(f"x{i % 500}", 1.0)],  # an unbounded stream of feature names
                predictions=[("p", f"class-{i % 1000}")],
                shadows=[ShadowResult(f"s{i % 7}", f"models/m{i % 50}", 9, latency_s=0.01)],
            )
        )
    return out


async def test_caps_hold_under_sustained_load(store: MonitorStore) -> None:
    settings = MonitorSettings(
        max_series=40,
        max_shadow_series=20,
        max_sampled_versions=10,
        max_features=16,
        samples_per_bucket=32,
        max_tracked_requests=1_000,
        max_prediction_labels=8,
    )
    clock = ManualClock()
    rng = random.Random(0)
    monitor = Monitor(settings, store, clock=clock, rng=rng)
    total = accepted = dropped = 0
    # 24 rounds of 1 000 events, 5 simulated minutes apart: two hours, so every time ring
    # fills up and starts recycling its buckets after the first hour.
    for round_ in range(24):
        batch = _events(1_000, round_ * 1_000, clock, rng)
        result = monitor.ingest(batch)
        total += len(batch)
        accepted += result.accepted
        dropped += result.dropped
        clock.advance(300)
    assert total == 24_000 and accepted + dropped == total
    assert dropped > 0 and monitor.counters.dropped["series_limit"] == dropped
    assert len(monitor.series) == 40
    assert len(monitor.shadows) == 20
    assert len(monitor.samples) <= 10
    assert len(monitor.requests) == 1_000 and monitor.requests.evicted_early > 0
    # Samples: at most versions × names × buckets × reservoir size.
    assert monitor.samples.value_count() <= 10 * 16 * 61 * 32
    assert monitor.samples.refused_values > 0
