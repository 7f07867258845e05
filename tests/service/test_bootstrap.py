"""The shared server bootstrap: health, reflection, error mapping, auth, metrics, shutdown."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelhub.api.router.v1 import router_pb2, router_pb2_grpc
from modelhub.common import errors
from modelhub.common.auth import Role
from modelhub.common.server import ServiceRuntime
from modelhub.common.settings import AuthSettings, ServiceSettings
from modelhub.common.status import STATUS_DETAILS_KEY, error_info

SERVICE = "modelhub.router.v1.RouterService"
ROLES = {"GetRoutingTable": Role.READER, "ExplainRoute": Role.READER, "RecordOutcome": Role.ADMIN}


class FakeRouter(router_pb2_grpc.RouterServiceServicer):
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def GetRoutingTable(self, request, context):
        raise errors.NotFoundError("endpoint 'x' not found", metadata={"endpoint": "x"})

    async def ExplainRoute(self, request, context):
        if request.key == "slow":
            await self.release.wait()
        return router_pb2.ExplainRouteResponse(endpoint=request.endpoint, key=request.key)

    async def RecordOutcome(self, request, context):
        raise ValueError("boom")


async def _start(auth: AuthSettings | None = None) -> tuple[ServiceRuntime, FakeRouter]:
    settings = ServiceSettings(auth=auth or AuthSettings(), grace_period_s=5)
    runtime = ServiceRuntime("test", settings, ROLES)
    servicer = FakeRouter()
    runtime.add_service(SERVICE, router_pb2_grpc.add_RouterServiceServicer_to_server, servicer)
    await runtime.start()
    return runtime, servicer


@pytest.fixture
async def runtime() -> AsyncIterator[tuple[ServiceRuntime, FakeRouter]]:
    rt, servicer = await _start()
    yield rt, servicer
    await rt.stop(0)


async def test_health_reflection_and_errors(runtime: tuple[ServiceRuntime, FakeRouter]) -> None:
    rt, _ = runtime
    async with grpc.aio.insecure_channel(rt.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
        assert SERVICE in names

        stub = router_pb2_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetRoutingTable(router_pb2.GetRoutingTableRequest())
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "endpoint 'x' not found"
        details = dict(err.value.trailing_metadata())[STATUS_DETAILS_KEY]
        info = error_info(details)
        assert info is not None
        assert info.reason == "NOT_FOUND"
        assert info.metadata["endpoint"] == "x"

        # An unexpected exception is INTERNAL, never UNKNOWN, and the server keeps serving.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordOutcome(router_pb2.RecordOutcomeRequest(request_id="r"))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "ValueError" in (err.value.details() or "")
        ok = await stub.ExplainRoute(router_pb2.ExplainRouteRequest(endpoint="e", key="k"))
        assert ok.key == "k"

    url = f"http://127.0.0.1:{rt.metrics_port}/metrics"
    body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url).read())).decode()
    assert (
        'modelhub_grpc_server_handled_total{code="NOT_FOUND",method="GetRoutingTable",'
        'service="modelhub.router.v1.RouterService"} 1.0' in body
    )
    assert 'code="INTERNAL",method="RecordOutcome"' in body


async def test_auth_roles() -> None:
    rt, _ = await _start(AuthSettings(tokens="rtok:reader,atok:admin"))
    try:
        async with grpc.aio.insecure_channel(rt.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            request = router_pb2.ExplainRouteRequest(endpoint="e", key="k")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ExplainRoute(request)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ExplainRoute(request, metadata=[("authorization", "Bearer bad")])
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = await stub.ExplainRoute(request, metadata=[("authorization", "Bearer rtok")])
            assert reply.key == "k"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RecordOutcome(
                    router_pb2.RecordOutcomeRequest(request_id="r"),
                    metadata=[("authorization", "Bearer rtok")],
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "needs role admin" in (err.value.details() or "")
            # Health stays open without a token.
            health = health_pb2_grpc.HealthStub(channel)
            reply2 = await health.Check(health_pb2.HealthCheckRequest())
            assert reply2.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await rt.stop(0)


async def test_graceful_shutdown_drains_in_flight_calls() -> None:
    rt, servicer = await _start()
    async with grpc.aio.insecure_channel(rt.address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        slow = asyncio.ensure_future(
            stub.ExplainRoute(router_pb2.ExplainRouteRequest(endpoint="e", key="slow"))
        )
        await asyncio.sleep(0.2)
        stopping = asyncio.ensure_future(rt.stop(5))
        await asyncio.sleep(0.2)
        health = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
            status: object = reply.status
        except grpc.aio.AioRpcError as exc:  # or already refusing new calls
            status = exc.code()
        assert status in (health_pb2.HealthCheckResponse.NOT_SERVING, grpc.StatusCode.UNAVAILABLE)
        assert not slow.done()
        servicer.release.set()
        reply = await slow
        assert reply.key == "slow"
        await stopping


async def test_tracing_only_where_it_matters() -> None:
    """Without span recording, only calls that carry a traceparent are instrumented, and they
    continue the caller's trace."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = ServiceRuntime(
        "test", ServiceSettings(), ROLES, tracer_provider=provider, trace_all=False
    )
    runtime.add_service(SERVICE, router_pb2_grpc.add_RouterServiceServicer_to_server, FakeRouter())
    await runtime.start()
    try:
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            request = router_pb2.ExplainRouteRequest(endpoint="e", key="k")
            await stub.ExplainRoute(request)
            assert exporter.get_finished_spans() == ()
            trace_id = "0af7651916cd43dd8448eb211c80319c"
            await stub.ExplainRoute(
                request, metadata=[("traceparent", f"00-{trace_id}-b7ad6b7169203331-01")]
            )
            spans = exporter.get_finished_spans()
            assert len(spans) == 1
            assert format(spans[0].context.trace_id, "032x") == trace_id
            assert spans[0].name == f"/{SERVICE}/ExplainRoute"
    finally:
        await runtime.stop(0)


async def test_bytes_that_are_no_valid_request_are_invalid_argument(
    runtime: tuple[ServiceRuntime, FakeRouter],
) -> None:
    """Not UNKNOWN ("Unexpected DecodeError"): the client sent a bad message."""
    rt, _ = runtime
    async with grpc.aio.insecure_channel(rt.address) as channel:
        raw_call = channel.unary_unary(f"/{SERVICE}/ExplainRoute")  # bytes in, bytes out
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await raw_call(b"\x0a\x05fr")  # field 1: 5 bytes declared, 2 present
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid modelhub.router.v1.ExplainRouteRequest" in (err.value.details() or "")
        info = error_info(dict(err.value.trailing_metadata())[STATUS_DETAILS_KEY])
        assert info is not None
        assert info.reason == "MALFORMED_MESSAGE"
        request = router_pb2.ExplainRouteRequest(endpoint="e", key="k")
        answer = await raw_call(request.SerializeToString())
        assert router_pb2.ExplainRouteResponse.FromString(answer).key == "k"
    url = f"http://127.0.0.1:{rt.metrics_port}/metrics"
    body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url).read())).decode()
    assert 'code="INVALID_ARGUMENT",method="ExplainRoute"' in body


async def test_lenient_decoding_of_generic_and_streaming_handlers() -> None:
    """Services registered through a generic handler only, and server-streaming methods,
    refuse undecodable requests the same way."""

    async def watch(request: health_pb2.HealthCheckRequest, context: object):
        for _ in range(2):
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def add(servicer: object, server: grpc.aio.Server) -> None:
        handler = grpc.unary_stream_rpc_method_handler(
            watch,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Watcher", {"Watch": handler}),)
        )

    rt = ServiceRuntime("test", ServiceSettings(), {})
    rt.add_service("test.Watcher", add, None)
    await rt.start()
    try:
        async with grpc.aio.insecure_channel(rt.address) as channel:
            raw_call = channel.unary_stream("/test.Watcher/Watch")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in raw_call(b"\x0a\x05fr"):
                    pass
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid grpc.health.v1.HealthCheckRequest" in (err.value.details() or "")
            valid = health_pb2.HealthCheckRequest().SerializeToString()
            answers = [a async for a in raw_call(valid)]
            assert len(answers) == 2
    finally:
        await rt.stop(0)
