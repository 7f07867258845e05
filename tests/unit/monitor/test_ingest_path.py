"""The per-event ingest path: the fast validation agrees with the field-by-field one, and
the series cache never hands out a series the table has evicted."""

from __future__ import annotations

import itertools
import math
import random

from modelhub.monitor.clock import ManualClock
from modelhub.monitor.events import (
    Event,
    ShadowResult,
    _all_violations,  # the field-by-field reference
    event_violations,
)
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.series import IDLE_S, RESCAN_S, SeriesKey
from modelhub.monitor.settings import MonitorSettings

from .helpers import event

NOW = 1_700_000_000.0
SKEW = 300.0

CHOICES: dict[str, list[object]] = {
    "model": ["models/fraud", "", "fraud", "models/Bad", "models/"],
    "version": [1, 0, -1],
    "latency_s": [0.01, 0.0, -0.5, math.nan, math.inf],
    "queue_s": [0.0, 0.002, -1.0, math.nan],
    "compute_s": [0.0, 0.003, math.inf],
    "time": [0.0, NOW, NOW + SKEW + 1, math.nan, -math.inf, math.inf],
    "status_code": [0, 14, 17, -1],
    "rows": [0, 3, -1],
    "request_id": ["", "r1", "x" * 257],
    "endpoint": ["", "endpoints/shop", "shop", "endpoints/Shop"],
    "variant": ["", "champion", "bad name!", "x" * 129],
    "source": ["inference", "router", "unknown", "batch"],
    "shadow": [False, True],
    "mirrored": [False, True],
    "outputs": [(), (0.1, 0.9), tuple([0.0] * 1025)],
    "features": [
        (),
        (("input[0]", 1.0), ("f", "cat")),
        (("", 1.0),),
        (("x", math.nan),),
        (("c", "y" * 257),),
    ],
    "predictions": [(), (("score", 0.5),), (("p", -math.inf),)],
    "shadows": [
        (),
        (ShadowResult("next", "models/fraud", 2),),
        (ShadowResult("", "fraud", 0, 99, -1.0, math.nan),),
    ],
}


def _described(event: Event) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in event_violations(event, NOW, SKEW)]


def test_fast_validation_agrees_with_the_field_by_field_one() -> None:
    rng = random.Random(11)
    names = list(CHOICES)
    for _ in range(4000):
        # Mostly valid events (the first choice of each field), with a few bad fields.
        fields = {name: CHOICES[name][0] for name in names}
        for name in rng.sample(names, rng.choice([0, 0, 1, 1, 2, 3])):
            fields[name] = rng.choice(CHOICES[name])
        candidate = Event(**fields)  # type: ignore[arg-type]
        expected = [(v.field, v.description) for v in _all_violations(candidate, NOW, SKEW)]
        assert _described(candidate) == expected, fields


def test_every_single_bad_field_is_reported() -> None:
    for name, values in CHOICES.items():
        for value in itertools.islice(values, 1, None):
            fields = {n: v[0] for n, v in CHOICES.items()}
            fields[name] = value
            candidate = Event(**fields)  # type: ignore[arg-type]
            reference = _all_violations(candidate, NOW, SKEW)
            assert len(_described(candidate)) == len(reference)


def test_an_evicted_series_is_not_served_from_the_cache() -> None:
    clock = ManualClock()
    settings = MonitorSettings(database_url="sqlite+aiosqlite://", metrics_port=-1, max_series=1)
    monitor = Monitor(settings, store=None, clock=clock)  # type: ignore[arg-type]
    assert monitor.ingest([event(variant="a", endpoint="endpoints/shop")]).accepted == 1
    # `a` goes idle: a new series takes its place, and `a` no longer has one.
    clock.advance(IDLE_S + 120 + RESCAN_S)
    assert monitor.ingest([event(variant="b", endpoint="endpoints/shop")]).accepted == 1
    result = monitor.ingest([event(variant="a", endpoint="endpoints/shop")])
    assert (result.accepted, result.drop_reasons) == (0, {"series_limit": 1})
    assert [s.key.variant for s in monitor.series] == ["b"]
    assert monitor.stats(SeriesKey(variant="a"), 300).requests == 0
    # The series kept is still found (and counted) through the cache.
    assert monitor.ingest([event(variant="b", endpoint="endpoints/shop")]).accepted == 1
    assert monitor.stats(SeriesKey(variant="b"), 60).requests == 2
