"""What travels with a request through the router: the caller's deadline, the trace
context, and credentials checked at the router's edge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.common.settings import AuthSettings
from tests.service.router.conftest import RouterFactory
from tests.service.router.helpers import (
    Behaviour,
    FaultyBackend,
    create_endpoint,
    infer_request,
    variant,
)

Stub = registry_pb2_grpc.RegistryServiceStub
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
async def backend() -> AsyncIterator[FaultyBackend]:
    started = await FaultyBackend(Behaviour(add=1.0)).start()
    yield started
    await started.stop()


async def test_deadline_and_trace_context_reach_the_backend(
    registry_api: Stub, routers: RouterFactory, backend: FaultyBackend
) -> None:
    await create_endpoint(registry_api, "e", [variant("a", 1, 1, pool=[backend.address])])
    _, clients = await routers()
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    await clients.oip.ModelInfer(
        infer_request("e"), timeout=5.0, metadata=(("traceparent", traceparent),)
    )
    (deadline,) = backend.deadlines
    assert deadline is not None and 0 < deadline <= 5.0
    (metadata,) = backend.metadata
    # The same trace continues at the backend (the test process installs no tracer
    # provider, so the router's spans are non-recording and keep the parent span id).
    version, trace_id, _span_id, flags = metadata["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    # Without a deadline from the caller, none is invented.
    await clients.oip.ModelInfer(infer_request("e"))
    assert backend.deadlines[1] is None


async def test_an_expired_deadline_is_not_retried_or_fallen_back(
    registry_api: Stub, routers: RouterFactory, backend: FaultyBackend
) -> None:
    backend.behaviour = Behaviour(delay_s=5.0)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[backend.address]), variant("b", 2, 0)],
        fallback="b",
    )
    _, clients = await routers()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.oip.ModelInfer(infer_request("e"), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert backend.received == 1


async def test_router_checks_credentials_at_its_edge(
    registry_api: Stub, routers: RouterFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("a", 1, 1)])
    _, clients = await routers(auth=AuthSettings(tokens="r34d:reader,4dm1n:admin"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.oip.ModelInfer(infer_request("e"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reader = (("authorization", "Bearer r34d"),)
    response = await clients.oip.ModelInfer(infer_request("e"), metadata=reader)
    assert response.model_version == "1"
    table = await clients.router.GetRoutingTable(pb.GetRoutingTableRequest(), metadata=reader)
    assert table.synced
    outcome = await clients.router.RecordOutcome(
        pb.RecordOutcomeRequest(request_id=response.id, value=1.0), metadata=reader
    )
    assert outcome.attributed
