"""Failures through Envoy: an UNAVAILABLE answer is retried and the endpoint's fallback
variant serves it (running the fallback's model, although the retried request still
carries the first variant's headers), other errors pass through unchanged and are not
retried, a dead replica pool does not fail requests, and a replica that dies under load
stops getting traffic."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    Behaviour,
    FaultyBackend,
    create_endpoint,
    output,
    params,
    start_inference,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyBackend]:
    backend = await FaultyBackend().start()
    yield backend
    await backend.stop()


def unused_address() -> str:
    """An address where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_unavailable_answer_falls_back_to_the_fallback_model(
    registry_api: Stub, front_doors: FrontDoorFactory, faulty: FaultyBackend
) -> None:
    # Variant a runs on its own replica, which answers UNAVAILABLE (model not ready); the
    # fallback b runs on the default pool (real inference, version 2: y = x + 2).
    faulty.behaviour = Behaviour(error=grpc.StatusCode.UNAVAILABLE, error_details=True)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[faulty.address]), variant("b", 2, 0)],
        fallback="b",
    )
    door = await front_doors()
    await wait_for(lambda: door.clients.variant("e"), 10.0)
    faulty.received = 0
    for _ in range(10):
        response = await door.clients.infer("e")
        assert params(response)["modelhub.variant"] == "b"
        assert output(response).tolist() == [3.0] * 4  # version 2 answered, not version 1
    # Every request tried variant a first, carrying a's target and the fallback.
    assert faulty.received == 10
    first = faulty.metadata[-1]
    assert first["x-modelhub-variant"] == "a"
    assert first["x-modelhub-target"] == "m:1"
    assert first["x-modelhub-fallback"] == "b=m:2"
    assert first["x-envoy-attempt-count"] == "1"


async def test_fallback_on_the_same_replicas_runs_the_fallback_model(
    registry_api: Stub, front_doors: FrontDoorFactory, faulty: FaultyBackend
) -> None:
    # Both variants on one (faulty) replica: the first try fails, the retry carries the
    # same variant headers plus attempt 2, and must be served as the fallback.
    faulty.behaviour = Behaviour(error=grpc.StatusCode.UNAVAILABLE, error_details=True)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[faulty.address]), variant("b", 2, 0, pool=[faulty.address])],
        fallback="b",
    )
    door = await front_doors()
    await wait_for(lambda: _received(door, faulty), 10.0)
    retried = [m for m in faulty.metadata if m.get("x-envoy-attempt-count") == "2"]
    assert retried, faulty.metadata
    assert retried[0]["x-modelhub-variant"] == "a"
    assert retried[0]["x-modelhub-fallback"] == "b=m:2"


async def _received(door: object, faulty: FaultyBackend) -> bool:
    from tests.service.router.conftest import FrontDoor

    assert isinstance(door, FrontDoor)
    with contextlib.suppress(grpc.aio.AioRpcError):
        await door.clients.infer("e")
    return faulty.received >= 2


async def test_without_fallback_unavailable_reaches_the_client_after_retries(
    registry_api: Stub, front_doors: FrontDoorFactory, faulty: FaultyBackend
) -> None:
    faulty.behaviour = Behaviour(error=grpc.StatusCode.UNAVAILABLE, error_details=True)
    await create_endpoint(registry_api, "e", [variant("a", 1, 100, pool=[faulty.address])])
    door = await front_doors()
    await wait_for(lambda: _received(door, faulty), 10.0)
    faulty.received = 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await door.clients.infer("e")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert faulty.received == 3  # the first try and two retries


async def test_other_errors_pass_through_unchanged_and_are_not_retried(
    registry_api: Stub, front_doors: FrontDoorFactory, faulty: FaultyBackend
) -> None:
    faulty.behaviour = Behaviour(error=grpc.StatusCode.INVALID_ARGUMENT)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[faulty.address]), variant("b", 2, 0)],
        fallback="b",
    )
    door = await front_doors()
    await wait_for(lambda: _received(door, faulty), 10.0)
    faulty.received = 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await door.clients.infer("e")
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "input 'x' has shape [1, 4]; the model expects [-1, 8]"
    info = error_info(dict(error.trailing_metadata())[STATUS_DETAILS_KEY])
    assert info is not None and info.reason == "SHAPE_MISMATCH"
    assert faulty.received == 1


async def test_dead_replica_pool_fails_no_request(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    # Nothing listens where variant a's replicas should be: the first tries fail to
    # connect and go to the fallback's replicas; once Envoy's health checks eject the dead
    # pool, requests go there directly.
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[unused_address()]), variant("b", 2, 0)],
        fallback="b",
    )
    door = await front_doors()
    for _ in range(20):
        response = await door.clients.infer("e")
        assert params(response)["modelhub.variant"] in ("a", "b")


async def test_replica_killed_under_load_stops_getting_traffic(
    registry_api: Stub,
    registry_address: str,
    inference: InferenceApp,
    front_doors: FrontDoorFactory,
    tmp_path: Path,
) -> None:
    second = await start_inference(registry_address, tmp_path, name="second")
    await create_endpoint(registry_api, "e", [variant("a", 1, 100)])
    door = await front_doors(backends=[inference.address, second.address])
    await wait_for(lambda: door.clients.variant("e"), 10.0)
    failures = 0
    answered = 0
    errors: list[str] = []

    late_failures = 0
    killed_at = 0.0
    loop = asyncio.get_running_loop()

    async def load(stop: asyncio.Event) -> None:
        nonlocal failures, answered, late_failures
        while not stop.is_set():
            try:
                await door.clients.infer("e")
                answered += 1
            except grpc.aio.AioRpcError as exc:
                failures += 1
                errors.append(f"{exc.code().name}: {exc.details()}")
                if killed_at and loop.time() > killed_at + 1.0:
                    late_failures += 1

    stop = asyncio.Event()
    workers = [asyncio.create_task(load(stop)) for _ in range(8)]
    await asyncio.sleep(0.5)
    await second.stop(0)  # gone mid-load: its in-flight calls are cancelled
    killed_at = loop.time()
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*workers)
    assert answered > 100
    # Only calls in flight on the dying replica, and the few whose retries drew it again
    # before Envoy ejected it, may fail; then it gets no traffic.
    assert failures <= answered / 100, f"{failures} of {answered}: {set(errors)}"
    assert late_failures == 0, f"{late_failures} failures 1 s after the kill: {set(errors)}"
