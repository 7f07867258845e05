"""Fixtures for the inference service tests: an in-process server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.inference.main import InferenceApp
from modelhub.inference.settings import InferenceSettings

StartInference = Callable[..., Awaitable[InferenceApp]]


def write_models(directory: Path, models: dict[str, bytes]) -> Path:
    """`directory/<name>.onnx` for each model (version 1 of a directory source)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in models.items():
        (directory / f"{name}.onnx").write_bytes(data)
    return directory


@pytest.fixture
async def start_inference(tmp_path: Path) -> AsyncIterator[StartInference]:
    """Starts inference servers; keyword arguments are settings, plus `source`,
    `run_hook`, `tracer_provider` and `trace_all` for the app."""
    apps: list[InferenceApp] = []

    async def start(
        *,
        source: Any = None,
        run_hook: Any = None,
        tracer_provider: Any = None,
        trace_all: bool | None = None,
        wait_ready: bool = True,
        **settings: Any,
    ) -> InferenceApp:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "cache_dir": str(tmp_path / f"cache{len(apps)}"),
            "grace_period_s": 1.0,
            "device": "cpu",
            "max_queue_delay_us": 0,
        }
        values.update(settings)
        app = InferenceApp(
            InferenceSettings(**values),
            source=source,
            run_hook=run_hook,
            tracer_provider=tracer_provider,
            trace_all=trace_all,
        )
        await app.start()
        apps.append(app)
        if wait_ready and app.watcher is not None:
            await asyncio.wait_for(app.watcher.synced.wait(), 30)
        return app

    yield start
    for app in apps:
        await app.stop(0)


@pytest.fixture
async def channel_to() -> AsyncIterator[Callable[[InferenceApp], grpc.aio.Channel]]:
    channels: list[grpc.aio.Channel] = []

    def open_channel(app: InferenceApp) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(app.address)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()


def stubs(
    channel: grpc.aio.Channel,
) -> tuple[pb_grpc.GRPCInferenceServiceStub, ipb_grpc.ModelRepositoryServiceStub]:
    return (
        pb_grpc.GRPCInferenceServiceStub(channel),
        ipb_grpc.ModelRepositoryServiceStub(channel),
    )
