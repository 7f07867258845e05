"""Monitor ingestion throughput over gRPC (client-streaming IngestEvents), in-process.

    .venv/bin/python bench/monitor_ingest.py [--events 200000] [--streams 1 2 4]
        [--batches 100 500 2000]

Starts a real monitor server on 127.0.0.1:0 (temporary SQLite database) and sends events
with realistic payloads (8 features, 1 prediction, a request id) from concurrent streams,
printing events per second for each batch size and stream count. The client runs in the
same process and shares its CPU with the server: figures are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.monitor import migrate
from modelhub.monitor.main import build
from modelhub.monitor.settings import MonitorSettings


def make_batches(total: int, size: int, seed: int) -> list[pb.IngestEventsRequest]:
    rng = random.Random(seed)
    batches = []
    for start in range(0, total, size):
        events = [
            pb.InferenceEvent(
                request_id=f"{seed}-{i}",
                endpoint="endpoints/fraud",
                variant=("champion", "challenger")[i % 2],
                model="models/fraud",
                version=1 + i % 2,
                latency_seconds=rng.lognormvariate(-4.0, 0.5),
                status_code=0,
                source="router",
                features=[pb.FeatureValue(name=f"f{j}", number=rng.random()) for j in range(8)],
                predictions=[pb.FeatureValue(name="score", number=rng.random())],
            )
            for i in range(start, min(start + size, total))
        ]
        batches.append(pb.IngestEventsRequest(events=events))
    return batches


async def one_stream(
    stub: monitor_pb2_grpc.MonitorServiceStub, batches: list[pb.IngestEventsRequest]
) -> int:
    async def requests() -> AsyncIterator[pb.IngestEventsRequest]:
        for batch in batches:
            yield batch

    reply = await stub.IngestEvents(requests())
    return int(reply.accepted)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 500, 2000])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'monitor.db'}"
        await migrate.upgrade(url)
        settings = MonitorSettings(database_url=url, port=0, metrics_port=-1, grace_period_s=1)
        app = await build(settings)
        await app.start()
        channel = grpc.aio.insecure_channel(
            app.runtime.address, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        print(f"{'batch':>6} {'streams':>7} {'events':>8} {'seconds':>8} {'events/s':>9}")
        try:
            for size in args.batches:
                for streams in args.streams:
                    per_stream = args.events // streams
                    work = [make_batches(per_stream, size, seed) for seed in range(streams)]
                    started = time.perf_counter()
                    accepted = await asyncio.gather(*(one_stream(stub, w) for w in work))
                    elapsed = time.perf_counter() - started
                    total = sum(accepted)
                    print(
                        f"{size:>6} {streams:>7} {total:>8} {elapsed:>8.2f} {total / elapsed:>9.0f}"
                    )
        finally:
            await channel.close()
            await app.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
