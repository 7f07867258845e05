"""Fixtures: a registry with model m (versions 1-3: y = x + 1, 2, 3), a real inference
server following it, and front doors: a router writing Envoy's configuration and an Envoy
routing by it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.inference.main import InferenceApp
from modelhub.router.main import RouterApp
from tests.service.router.helpers import (
    Clients,
    EnvoyProcess,
    publish_versions,
    start_envoy,
    start_inference,
    start_router,
)


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


@dataclass
class FrontDoor:
    router: RouterApp
    envoy: EnvoyProcess
    clients: Clients
    xds_dir: Path
    backends: list[str]


FrontDoorFactory = Callable[..., Awaitable[FrontDoor]]


@pytest.fixture
async def front_doors(
    registry_address: str, inference: InferenceApp, tmp_path: Path
) -> AsyncIterator[FrontDoorFactory]:
    """Starts router + Envoy pairs (default pool: the inference server) and stops them."""
    started: list[FrontDoor] = []

    async def make(
        *,
        backends: list[str] | None = None,
        monitor: str = "",
        envoy: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> FrontDoor:
        """`overrides`: router settings; `envoy`: Envoy's (EnvoyParams fields)."""
        pool = backends or [inference.address]
        index = len(started)
        xds_dir = tmp_path / f"xds-{index}"
        if monitor:
            overrides.setdefault("monitor_address", monitor)
        app = await start_router(registry_address, pool, xds_dir, **overrides)
        proxy = await start_envoy(
            tmp_path,
            xds_dir,
            inference=pool,
            router=app.address,
            registry=registry_address,
            monitor=monitor,
            name=f"envoy-{index}",
            **(envoy or {}),
        )
        door = FrontDoor(app, proxy, Clients.connect(proxy.address, app.address), xds_dir, pool)
        started.append(door)
        return door

    yield make
    for door in started:
        await door.clients.close()
        await door.envoy.stop()
        if not door.router.stopped:
            await door.router.stop(0)
