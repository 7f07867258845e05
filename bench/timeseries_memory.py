"""Memory of the QueryTimeSeries history: bytes per series with traffic in every step.

    .venv/bin/python bench/timeseries_memory.py [--series 10] [--per-step 20,200]
                                                [--sigma 0.5,1.5]

Feeds N series (one model, N versions) through the real ingest path (`Monitor.ingest`, no
gRPC), `--per-step` events per series in every 10-second step of one simulated hour plus
one step (a `ManualClock`), latencies lognormal (median 20 ms, each `--sigma`), one request
in 50 failed. It then prints, per row, what tracemalloc counts as allocated on behalf of
`modelhub/monitor/timeseries.py` (every allocation with that file anywhere in its
traceback: the history's arrays, or its per-step sketches in older designs) per series
and in total, the projection to the `max_history_series` cap, the whole monitor heap per
series for scale, and the ingest rate of a second, untraced run of the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
import tracemalloc

from modelhub.monitor.clock import ManualClock
from modelhub.monitor.events import Event
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore

STEP_S = 10.0
STEPS = 361  # the hour and the step in progress
HISTORY_FILE = "*/monitor/timeseries.py"


def step_events(
    series: int, per_step: int, sigma: float, t0: float, rng: random.Random
) -> list[Event]:
    """`per_step` events for each of `series` series, spread over the step from t0."""
    mu = math.log(0.02)
    return [
        Event(
            model="models/bench",
            version=1 + s,
            latency_s=rng.lognormvariate(mu, sigma),
            time=t0 + STEP_S * i / per_step,
            endpoint="endpoints/bench",
            variant=f"v{s}",
            status_code=14 if i % 50 == 49 else 0,
            source="router",
        )
        for s in range(series)
        for i in range(per_step)
    ]


async def fill(series: int, per_step: int, sigma: float, traced: bool) -> tuple[int, int, float]:
    """History bytes, whole heap growth (both 0 untraced) and seconds spent ingesting."""
    settings = MonitorSettings()  # the shipped caps are what is being measured
    store = MonitorStore.from_url("sqlite+aiosqlite:///:memory:")
    clock = ManualClock()
    monitor = Monitor(settings, store, clock=clock)
    rng = random.Random(0)
    busy = 0.0
    if traced:
        tracemalloc.start(8)  # deep enough to reach timeseries.py from any allocation
    base = tracemalloc.get_traced_memory()[0] if traced else 0
    for _ in range(STEPS):
        batch = step_events(series, per_step, sigma, clock(), rng)
        clock.advance(STEP_S)
        started = time.perf_counter()
        result = monitor.ingest(batch)
        busy += time.perf_counter() - started
        assert result.accepted == len(batch), result
    history = heap = 0
    if traced:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, HISTORY_FILE, all_frames=True)]
        )
        history = sum(stat.size for stat in snapshot.statistics("filename"))
        heap = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    assert len(monitor.series) == series
    await store.close()
    return history, heap, busy


def csv_of(kind: type[float] | type[int], text: str) -> list[float] | list[int]:
    return [kind(x) for x in text.split(",") if x]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--per-step", default="20,200", help="events per series and step")
    parser.add_argument("--sigma", default="0.5,1.5", help="lognormal sigmas of the latency")
    args = parser.parse_args()
    cap = MonitorSettings().max_history_series
    print(f"{args.series} series, traffic in each of {STEPS} steps; cap {cap} series")
    header = (
        f"| {'ev/step':>7} | {'sigma':>5} | {'history B/series':>16} | {'history total':>13} "
        f"| {'at cap':>10} | {'heap B/series':>13} | {'ingest ev/s':>11} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c) - 1) + ":" for c in header.split("|")[1:-1]) + "|")
    for per_step in csv_of(int, args.per_step):
        for sigma in csv_of(float, args.sigma):
            history, heap, _ = await fill(args.series, int(per_step), sigma, traced=True)
            _, _, busy = await fill(args.series, int(per_step), sigma, traced=False)
            rate = args.series * int(per_step) * STEPS / busy
            per_series = history / args.series
            print(
                f"| {per_step:>7} | {sigma:>5} | {per_series:>16,.0f} | "
                f"{history / 2**20:>9.2f} MiB | {per_series * cap / 2**30:>6.3f} GiB | "
                f"{heap / args.series:>13,.0f} | {rate:>11,.0f} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
