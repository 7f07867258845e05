"""Failures: UNAVAILABLE falls back to the endpoint's fallback variant, other errors pass
through unchanged, and a backend that dies or reports NOT_SERVING stops getting traffic
until it is healthy again."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import RouterFactory
from tests.service.router.helpers import (
    Behaviour,
    FaultyBackend,
    create_endpoint,
    output,
    params,
    start_inference,
    variant,
    variant_counters,
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


async def test_unavailable_answer_falls_back(
    registry_api: Stub, routers: RouterFactory, faulty: FaultyBackend
) -> None:
    # An UNAVAILABLE answer of the service (model not ready): the backend stays healthy.
    faulty.behaviour = Behaviour(error=grpc.StatusCode.UNAVAILABLE, error_details=True)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[faulty.address]), variant("b", 2, 0)],
        fallback="b",
    )
    _, clients = await routers()
    for _ in range(10):
        response = await clients.infer("e")
        assert params(response)["modelhub.variant"] == "b"
        assert output(response).tolist() == [3.0] * 4  # version 2 answered
    counters = variant_counters(await clients.stats(), "endpoints/e")
    assert (counters["a"].requests, counters["a"].fallbacks, counters["a"].errors) == (10, 10, 0)
    assert counters["b"].requests == 10
    assert faulty.received == 10
    table = await clients.table()
    assert table.endpoints[0].variants[0].backends[0].healthy


async def test_dead_backend_falls_back_and_is_marked_unhealthy(
    registry_api: Stub, routers: RouterFactory
) -> None:
    dead = unused_address()
    await create_endpoint(
        registry_api, "e", [variant("a", 1, 100, pool=[dead]), variant("b", 2, 0)], fallback="b"
    )
    _, clients = await routers()
    for _ in range(5):
        assert params(await clients.infer("e"))["modelhub.variant"] == "b"
    table = await clients.table()
    backend = table.endpoints[0].variants[0].backends[0]
    assert backend.address == dead and not backend.healthy
    # Refused once; from then on the unhealthy backend gets no calls at all.
    assert backend.requests == 1 and backend.failures == 1
    assert variant_counters(await clients.stats(), "endpoints/e")["a"].fallbacks == 5


async def test_without_fallback_unavailable_reaches_the_client(
    registry_api: Stub, routers: RouterFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("a", 1, 1, pool=[unused_address()])])
    _, clients = await routers()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("e")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("e")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no healthy backend" in (caught.value.details() or "")
    assert variant_counters(await clients.stats(), "endpoints/e")["a"].errors == 2


async def test_other_errors_pass_through_unchanged(
    registry_api: Stub, routers: RouterFactory, faulty: FaultyBackend
) -> None:
    faulty.behaviour = Behaviour(error=grpc.StatusCode.INVALID_ARGUMENT)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[faulty.address]), variant("b", 2, 0)],
        fallback="b",
    )
    _, clients = await routers()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("e")
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "input 'x' has shape [1, 4]; the model expects [-1, 8]"
    trailers = dict(error.trailing_metadata())
    info = error_info(trailers[STATUS_DETAILS_KEY])
    assert info is not None and info.reason == "SHAPE_MISMATCH"
    assert trailers["modelhub-variant"] == "a"
    counters = variant_counters(await clients.stats(), "endpoints/e")
    assert (counters["a"].errors, counters["a"].fallbacks) == (1, 0)


async def test_backend_killed_mid_load_stops_getting_traffic(
    registry_api: Stub,
    registry_address: str,
    inference: InferenceApp,
    routers: RouterFactory,
    tmp_path: Path,
) -> None:
    second = await start_inference(registry_address, tmp_path, "second")
    stopped = False
    try:
        app, clients = await routers(backends=[inference.address, second.address])
        victim = next(b for b in app.backends.backends() if b.address == second.address)
        done = 0
        failures: list[grpc.StatusCode] = []
        killed = asyncio.Event()

        async def caller() -> None:
            nonlocal done
            while done < 300:
                try:
                    response = await clients.infer("m", version="1")
                    assert output(response).tolist() == [2.0] * 4
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc.code())
                done += 1
                if done == 100 and not killed.is_set():
                    killed.set()

        async def killer() -> None:
            await killed.wait()
            nonlocal stopped
            assert victim.requests > 10  # it was taking its share of the load
            stopped = True
            await second.stop(0)

        await asyncio.gather(*(caller() for _ in range(8)), killer())
        # Calls in flight on the victim when it died may fail; every later call succeeds.
        assert len(failures) <= 8, failures
        assert not victim.healthy
        calls_at_death = victim.requests
        for _ in range(50):
            await clients.infer("m", version="1")
        assert victim.requests == calls_at_death
        table = await clients.table()
        health = {b.address: b.healthy for b in table.default_backends}
        assert health == {inference.address: True, second.address: False}
    finally:
        if not stopped:
            await second.stop(0)


async def test_not_serving_backend_gets_no_traffic_until_serving(
    registry_api: Stub, routers: RouterFactory, faulty: FaultyBackend, inference: InferenceApp
) -> None:
    faulty.behaviour = Behaviour(add=1.0)  # answers like version 1 would: x + 1
    await create_endpoint(
        registry_api, "e", [variant("a", 1, 1, pool=[faulty.address, inference.address])]
    )
    app, clients = await routers(health_check_interval_s=0.05)
    for _ in range(10):
        await clients.infer("e")
    assert faulty.received > 0
    await faulty.set_serving(False)
    backend = next(b for b in app.backends.backends() if b.address == faulty.address)
    await wait_for(lambda: not backend.healthy)
    before = faulty.received
    for _ in range(20):
        assert output(await clients.infer("e")).tolist() == [2.0] * 4
    assert faulty.received == before
    await faulty.set_serving(True)
    await wait_for(lambda: backend.healthy)
    for _ in range(20):
        await clients.infer("e")
    assert faulty.received > before
