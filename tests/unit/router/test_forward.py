"""The data path's retry, fallback and error rules, over fake backend connections."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc.aio import Metadata

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.errors import UnavailableError
from modelhub.common.status import STATUS_DETAILS_KEY
from modelhub.router.backends import BackendRegistry
from modelhub.router.forward import DataPlane, transport_failure
from modelhub.router.routing import Router
from modelhub.router.stats import RouterCounters
from tests.unit.router.helpers import close_connection, endpoint, state, table

REFUSED = grpc.aio.AioRpcError(
    grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(), "failed to connect"
)
NOT_READY = grpc.aio.AioRpcError(
    grpc.StatusCode.UNAVAILABLE,
    Metadata(),
    Metadata((STATUS_DETAILS_KEY, b"\x08\x0e")),
    "model not ready",
)


class Connection:
    """Answers with `answer` (bytes) or raises it (an AioRpcError); records calls."""

    def __init__(self, address: str, answers: dict[str, Any]) -> None:
        self.address = address
        self.answers = answers
        self.calls: list[pb.ModelInferRequest] = []

    def infer_call(self) -> Any:
        return self.infer

    def infer(self, data: bytes, timeout: float | None = None, metadata: Any = None) -> Any:
        self.calls.append(pb.ModelInferRequest.FromString(data))
        future = asyncio.get_running_loop().create_future()
        answer = self.answers[self.address]
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        return future


class Context:
    def __init__(self) -> None:
        self.trailers: Any = None

    def time_remaining(self) -> None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-user-id", "42"),)

    def set_trailing_metadata(self, trailers: Any) -> None:
        self.trailers = trailers

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        raise grpc.aio.AbortError(code, details)


def plane(spec: Any, answers: dict[str, Any]) -> tuple[DataPlane, BackendRegistry]:
    backends = BackendRegistry(lambda a: Connection(a, answers), close_connection, ["d:1"])
    counters = RouterCounters()
    router = Router(table(state(spec), backends, counters), counters)
    data_plane = DataPlane(
        router,
        mirror=None,
        events=None,
        outcomes=None,
        generate_request_ids=False,
        event_sample_rate=0.0,
    )
    return data_plane, backends


def request() -> bytes:
    return pb.ModelInferRequest(model_name="e", id="r1").SerializeToString()


def answer(version: str) -> bytes:
    return pb.ModelInferResponse(model_name="m", model_version=version).SerializeToString()


def test_transport_failures_are_told_from_service_answers() -> None:
    assert transport_failure(REFUSED)
    assert not transport_failure(NOT_READY)


async def test_transport_failure_is_retried_once_on_another_backend() -> None:
    spec = endpoint((100,), pools=(("a:1", "b:1"),))
    data_plane, backends = plane(spec, {"a:1": REFUSED, "b:1": answer("1")})
    for _ in range(3):
        raw = await data_plane.model_infer(request(), Context())
        response = pb.ModelInferResponse.FromString(raw)
        assert response.parameters["modelhub.variant"].string_param == "v0"
    a, b = backends.backend("a:1"), backends.backend("b:1")
    assert not a.healthy and a.failures == 1 and a.requests == 1  # tried once only
    assert b.healthy and b.requests == 3
    # The forwarded request names the variant's model and version.
    forwarded = b.connection.calls[0]
    assert (forwarded.model_name, forwarded.model_version, forwarded.id) == ("m", "1", "r1")


async def test_all_backends_failing_marks_each_down() -> None:
    spec = endpoint((100,), pools=(("a:1", "b:1"),))
    data_plane, backends = plane(spec, {"a:1": REFUSED, "b:1": REFUSED})
    with pytest.raises(grpc.aio.AbortError):
        await data_plane.model_infer(request(), Context())
    assert not backends.backend("a:1").healthy and not backends.backend("b:1").healthy
    with pytest.raises(UnavailableError, match="no healthy backend"):
        await data_plane.model_infer(request(), Context())


async def test_service_unavailable_falls_back_without_marking_the_backend() -> None:
    spec = endpoint((100, 0), pools=(("a:1",), ("b:1",)), fallback="v1")
    data_plane, backends = plane(spec, {"a:1": NOT_READY, "b:1": answer("2")})
    context = Context()
    raw = await data_plane.model_infer(request(), context)
    response = pb.ModelInferResponse.FromString(raw)
    assert response.parameters["modelhub.variant"].string_param == "v1"
    assert dict(context.trailers)["modelhub-version"] == "2"
    assert backends.backend("a:1").healthy
    forwarded = backends.backend("b:1").connection.calls[0]
    assert (forwarded.model_name, forwarded.model_version) == ("m", "2")


def test_only_a_silent_backend_counts_as_a_transport_failure() -> None:
    from grpc.aio import Metadata

    from modelhub.router.forward import transport_failure

    def error(code: grpc.StatusCode, trailers: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(code, Metadata(), Metadata(*trailers), "x")

    # Nothing came back: the connection failed.
    assert transport_failure(error(grpc.StatusCode.UNAVAILABLE, ()))
    # A proxy answered for a failed replica behind it, or the service answered "loading".
    assert not transport_failure(error(grpc.StatusCode.UNAVAILABLE, (("server", "envoy"),)))
    assert not transport_failure(
        error(grpc.StatusCode.UNAVAILABLE, (("grpc-status-details-bin", "x"),))
    )
    assert not transport_failure(error(grpc.StatusCode.INTERNAL, ()))
