"""Monitor memory under sustained load: one million events, memory must plateau.

    .venv/bin/python bench/monitor_memory.py [--events 1000000] [--batch 1000] [--traced]

Feeds events straight into the domain (`Monitor.ingest`, no gRPC) over two simulated hours
(the clock is simulated, so it runs as fast as ingestion), from more series, feature names
and request ids than the caps allow, and prints a table every 10% of the run: resident
memory, what the bounded tables hold, what was dropped. The caps hold when the table
sizes stop at their limits and resident memory stops growing once the first simulated
hour has filled every time ring. `--traced` adds the Python heap as tracemalloc counts it
(exact, but ingestion runs about half as fast): the check the unit tests used to make.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
import tracemalloc
from pathlib import Path

from modelhub.monitor.clock import ManualClock
from modelhub.monitor.events import Event, ShadowResult
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore

SIMULATED_S = 2 * 3600.0


def rss_mib() -> float:
    """Current resident set size (Linux), else the peak."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        pages = int(statm.read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(start: int, size: int, t: float, rng: random.Random) -> list[Event]:
    batch = []
    for i in range(start, start + size):
        model = i % 1000  # 1000 models × 3 versions: 3000 series, more than allowed
        batch.append(
            Event(
                model=f"models/m{model}",
                version=1 + i % 3,
                latency_s=rng.lognormvariate(-4.0, 0.8),
                time=t,
                request_id=f"req-{i}",  # a new id every event
                endpoint=f"endpoints/e{model % 20}",
                variant=f"v{i % 4}",
                status_code=14 if i % 50 == 0 else 0,
                source="router",
                features=[(f"f{j}", rng.gauss(0.0, 1.0)) for j in range(6)]
                + [("channel", rng.choice(("web", "app", "pos"))), (f"x{i % 1000}", 1.0)],
                predictions=[("score", rng.random())],
                shadows=[ShadowResult("next", f"models/m{model}", 9, latency_s=0.01)]
                if i % 10 == 0
                else [],
            )
        )
    return batch


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument(
        "--traced", action="store_true", help="also trace the Python heap (tracemalloc)"
    )
    args = parser.parse_args()
    if args.traced:
        tracemalloc.start()

    settings = MonitorSettings()  # the shipped defaults are what is being checked
    store = MonitorStore.from_url("sqlite+aiosqlite:///:memory:")  # ingestion never uses it
    clock = ManualClock()
    rng = random.Random(0)
    monitor = Monitor(settings, store, clock=clock, rng=rng)
    batches = args.events // args.batch
    step_s = SIMULATED_S / batches
    report_every = max(1, batches // 10)

    print(
        f"caps: series {settings.max_series}, sampled versions {settings.max_sampled_versions},"
        f" features/version {settings.max_features}, samples/bucket "
        f"{settings.samples_per_bucket}, request ids {settings.max_tracked_requests}"
    )
    header = (
        f"{'events':>9} {'sim min':>7} {'rss MiB':>8} {'series':>6} {'shadows':>7} "
        f"{'versions':>8} {'samples':>8} {'req ids':>7} {'accepted':>9} {'dropped':>8} "
        f"{'ev/s':>7}" + (f" {'heap MiB':>8}" if args.traced else "")
    )
    print(header)
    print("-" * len(header))
    rss_start = rss_mib()
    accepted = dropped = 0
    started = time.perf_counter()
    busy = 0.0
    rss_at_hour = 0.0
    heap_at_hour = 0.0
    for n in range(batches):
        batch = make_batch(n * args.batch, args.batch, clock(), rng)
        t0 = time.perf_counter()
        result = monitor.ingest(batch)
        busy += time.perf_counter() - t0
        accepted += result.accepted
        dropped += result.dropped
        clock.advance(step_s)
        if clock() - 1_699_999_200.0 >= 3600 and not rss_at_hour:
            rss_at_hour = rss_mib()
            heap_at_hour = tracemalloc.get_traced_memory()[0] / 2**20 if args.traced else 0.0
        if (n + 1) % report_every == 0 or n + 1 == batches:
            events = (n + 1) * args.batch
            print(
                f"{events:>9} {(clock() - 1_699_999_200.0) / 60:>7.0f} {rss_mib():>8.1f} "
                f"{len(monitor.series):>6} {len(monitor.shadows):>7} {len(monitor.samples):>8} "
                f"{monitor.samples.value_count():>8} {len(monitor.requests):>7} "
                f"{accepted:>9} {dropped:>8} {events / busy:>7.0f}"
                + (f" {tracemalloc.get_traced_memory()[0] / 2**20:>8.1f}" if args.traced else "")
            )
    rss_end = rss_mib()
    print()
    print(f"wall time {time.perf_counter() - started:.1f} s, ingestion {busy:.1f} s")
    print(
        f"resident memory: start {rss_start:.0f} MiB, after the first simulated hour "
        f"{rss_at_hour:.0f} MiB, end {rss_end:.0f} MiB"
    )
    print(
        f"dropped by reason: {dict(monitor.counters.dropped)}, sample values refused: "
        f"{monitor.samples.refused_values}"
    )
    growth = (rss_end - rss_at_hour) / max(rss_at_hour, 1.0)
    verdict = "bounded" if growth < 0.1 else "GROWING"
    print(f"growth over the second hour: {growth:+.1%} ({verdict})")
    if args.traced:
        heap_end = tracemalloc.get_traced_memory()[0] / 2**20
        heap_growth = (heap_end - heap_at_hour) / max(heap_at_hour, 1.0)
        print(
            f"Python heap: after the first simulated hour {heap_at_hour:.1f} MiB, end "
            f"{heap_end:.1f} MiB ({heap_growth:+.1%})"
        )
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
