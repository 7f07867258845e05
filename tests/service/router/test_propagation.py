"""What travels with a request through the front door (Envoy) to inference: the caller's
deadline, the W3C trace context and the routing headers; an expired deadline is neither
retried nor fallen back; and inference checks the caller's credentials behind Envoy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.settings import AuthSettings
from modelhub.router import xds
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    Behaviour,
    FaultyBackend,
    create_endpoint,
    infer_request,
    output,
    params,
    start_inference,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def backend() -> AsyncIterator[FaultyBackend]:
    started = await FaultyBackend(Behaviour(add=1.0)).start()
    yield started
    await started.stop()


async def test_deadline_trace_context_and_route_reach_inference(
    registry_api: Stub, front_doors: FrontDoorFactory, backend: FaultyBackend
) -> None:
    await create_endpoint(registry_api, "e", [variant("a", 1, 1, pool=[backend.address])])
    door = await front_doors()
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
    response = await door.clients.oip.ModelInfer(
        infer_request("e"),
        timeout=5.0,
        metadata=(("traceparent", traceparent), ("tracestate", "vendor=opaque")),
    )
    assert output(response).tolist() == [2.0] * 4  # the faulty backend: x + 1
    (deadline,) = backend.deadlines
    # The caller's deadline arrives (not the route's 60 s), shortened by the time on the way
    # up to the rounding up of gRPC's timeout encoding (a few milliseconds).
    assert deadline is not None and 0 < deadline < 5.05, deadline
    (metadata,) = backend.metadata
    # The same trace continues at inference (this Envoy has no tracer: it forwards the
    # caller's context as it came).
    version, trace_id, _span_id, flags = metadata["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert metadata.get("tracestate") == "vendor=opaque"
    # And Envoy's routing decision (docs/data-plane.md).
    assert metadata["x-modelhub-endpoint"] == "endpoints/e"
    assert metadata["x-modelhub-variant"] == "a"
    assert metadata["x-modelhub-target"] == "m:1"
    assert metadata["x-envoy-attempt-count"] == "1"
    assert metadata.get("x-request-id")
    assert "x-modelhub-shadow" not in metadata and "x-modelhub-mirrored" not in metadata

    # Without a deadline from the caller, inference gets none tighter than Envoy's own
    # route timeout.
    await door.clients.oip.ModelInfer(infer_request("e"))
    assert backend.deadlines[1] is None or backend.deadlines[1] <= 60.0, backend.deadlines


async def test_an_expired_deadline_is_not_retried_or_fallen_back(
    registry_api: Stub, front_doors: FrontDoorFactory, backend: FaultyBackend
) -> None:
    backend.behaviour = Behaviour(delay_s=5.0)
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 100, pool=[backend.address]), variant("b", 2, 0)],
        fallback="b",
    )
    door = await front_doors()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await door.clients.oip.ModelInfer(infer_request("e"), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert loop.time() - start < 2.0
    await wait_for(lambda: backend.received >= 1, 5.0)
    await asyncio.sleep(1.0)  # a retry (or the fallback's try) would have come by now
    assert backend.received == 1
    assert backend.metadata[0]["x-modelhub-fallback"] == "b=m:2"
    stats = door.envoy.stats()
    retries = {k: v for k, v in stats.items() if k.endswith(".upstream_rq_retry")}
    assert retries and all(v == "0" for v in retries.values()), retries
    # The fallback's replicas (the default pool) got no inference call either.
    assert stats[f"cluster.{xds.DEFAULT_CLUSTER}.upstream_rq_total"] == "0"


async def test_inference_checks_credentials_behind_envoy(
    registry_api: Stub,
    registry_address: str,
    front_doors: FrontDoorFactory,
    tmp_path: Path,
) -> None:
    guarded = await start_inference(
        registry_address, tmp_path, name="guarded", auth=AuthSettings(tokens="r34d:reader")
    )
    try:
        await create_endpoint(registry_api, "e", [variant("a", 1, 1)])
        door = await front_doors(backends=[guarded.address])
        for name in ("e", "m"):  # an endpoint, and a plain model name
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await door.clients.oip.ModelInfer(infer_request(name))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await door.clients.oip.ModelInfer(
                    infer_request(name), metadata=(("authorization", "Bearer wrong"),)
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        reader = (("authorization", "Bearer r34d"),)
        response = await door.clients.oip.ModelInfer(infer_request("e"), metadata=reader)
        assert response.model_version == "1"
        assert params(response)["modelhub.variant"] == "a"
        assert output(response).tolist() == [2.0] * 4
        # A version no endpoint routes to and no deployment names: a reader may not make
        # the server load it (issue 11, item 7).
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await door.clients.oip.ModelInfer(infer_request("m"), metadata=reader)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "LoadModel" in (caught.value.details() or "")
    finally:
        await guarded.stop(0)
