"""Fixtures: a registry with model m (versions 1-3: y = x + 1, 2, 3), a real inference
server following it, and a way to start routers against both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.inference.main import InferenceApp
from modelhub.router.main import RouterApp
from tests.service.router.helpers import Clients, publish_versions, start_inference, start_router


@pytest.fixture
async def registry_api(
    registry_address: str,
) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    """A stub of the in-process registry, with model m published (versions 1-3)."""
    async with grpc.aio.insecure_channel(registry_address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await publish_versions(stub)
        yield stub


@pytest.fixture
async def inference(
    registry_api: registry_pb2_grpc.RegistryServiceStub, registry_address: str, tmp_path: Path
) -> AsyncIterator[InferenceApp]:
    app = await start_inference(registry_address, tmp_path)
    yield app
    await app.stop(0)


RouterFactory = Callable[..., Awaitable[tuple[RouterApp, Clients]]]


@pytest.fixture
async def routers(registry_address: str, inference: InferenceApp) -> AsyncIterator[RouterFactory]:
    """Starts routers (default backend: the inference server) and stops them at the end."""
    started: list[tuple[RouterApp, Clients]] = []

    async def make(**overrides: Any) -> tuple[RouterApp, Clients]:
        backends = overrides.pop("backends", [inference.address])
        app = await start_router(registry_address, backends, **overrides)
        clients = Clients.connect(app.address)
        started.append((app, clients))
        return app, clients

    yield make
    for app, clients in started:
        await clients.close()
        if not app.stopped:
            await app.stop(0)
