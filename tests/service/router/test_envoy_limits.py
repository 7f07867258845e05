"""Envoy's byte cap on request bodies and its ops listener, against the real Envoy.

A body larger than the front door's limit (`EnvoyParams.max_request_bytes`; small here so
that the tests send little) is refused with a clear status — gRPC RESOURCE_EXHAUSTED, REST
413 `{"error": "…"}` — and never held whole: the routing filter refuses a gRPC message from
its frame prefix, and inference never sees it. The ops listener answers /ready and
/stats/prometheus and nothing else; the admin interface listens on loopback only."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import FrontDoor, FrontDoorFactory
from tests.service.router.helpers import FEATURES, create_endpoint, infer_request, output, variant

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("envoy")]

LIMIT = 256 << 10
# Rows of 4 float32 features: a message just under and well over the limit.
SMALL_ROWS = (LIMIT - 4096) // (4 * FEATURES)
LARGE_ROWS = 4 * LIMIT // (4 * FEATURES)
METHOD = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture
async def door(
    registry_api: registry_pb2_grpc.RegistryServiceStub, front_doors: FrontDoorFactory
) -> FrontDoor:
    return await front_doors(envoy={"max_request_bytes": LIMIT})


def rows(n: int) -> np.ndarray:
    return np.ones((n, FEATURES), np.float32)


def inference_calls(app: InferenceApp) -> float:
    """ModelInfer calls the inference server handled (its own RPC metrics)."""
    total = 0.0
    for family in app.runtime.metrics_registry.collect():
        for sample in family.samples:
            if (
                sample.name == "modelhub_grpc_server_handled_total"
                and sample.labels["method"] == "ModelInfer"
            ):
                total += sample.value
    return total


async def test_an_oversized_grpc_message_is_refused_without_being_held(
    door: FrontDoor, inference: InferenceApp
) -> None:
    oip = door.clients.oip
    # Just under the limit: through to inference, which answers for itself (the version
    # takes at most 64 rows).
    with pytest.raises(grpc.aio.AioRpcError) as answered:
        await oip.ModelInfer(infer_request("m", rows(SMALL_ROWS), version="2"), timeout=10)
    assert answered.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_batch_size" in (answered.value.details() or "")
    before = inference_calls(inference)
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await oip.ModelInfer(infer_request("m", rows(LARGE_ROWS), version="2"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = refused.value.details() or ""
        assert f"larger than the front door's limit of {LIMIT} bytes" in details
        assert "send fewer rows per request" in details
    assert inference_calls(inference) == before  # never forwarded
    stats = door.envoy.stats()
    # Refused from the frame prefix, not by Envoy's buffer overflowing (which would have
    # held it).
    assert stats["http.ingress.downstream_rq_too_large"] == "0"
    # The connection stays usable.
    response = await oip.ModelInfer(infer_request("m", version="1"), timeout=10)
    assert output(response).tolist() == [2.0] * FEATURES


async def test_a_message_read_for_its_parameters_is_refused_from_its_prefix(
    registry_api: registry_pb2_grpc.RegistryServiceStub, door: FrontDoor, inference: InferenceApp
) -> None:
    """The model named in the header and the sticky key in the parameters: the routing
    filter reads the message's first fields for the key, and refuses an oversized one from
    its frame prefix, before holding it or reaching inference."""
    await create_endpoint(
        registry_api,
        "ranker",
        [variant("a", 1, 50), variant("b", 2, 50)],
        sticky_key=rpb.StickyKey(source=rpb.StickyKey.PARAMETER, name="user"),
    )
    await door.envoy.wait_route("endpoint-ranker")
    request = infer_request("ranker", rows(LARGE_ROWS))
    request.parameters["user"].string_param = "alice"
    before = inference_calls(inference)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await door.clients.oip.ModelInfer(
            request, metadata=(("x-modelhub-model", "ranker"),), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"front door's limit of {LIMIT} bytes" in (refused.value.details() or "")
    assert door.envoy.stats()["http.ingress.downstream_rq_too_large"] == "0"
    assert inference_calls(inference) == before


def _post(address: str, path: str, body: bytes, *, chunked: bool) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(address, timeout=20)
    try:
        if chunked:
            connection.putrequest("POST", path)
            connection.putheader("content-type", "application/json")
            connection.putheader("transfer-encoding", "chunked")
            connection.endheaders()
            try:
                for start in range(0, len(body), 1 << 16):
                    piece = body[start : start + (1 << 16)]
                    connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                connection.send(b"0\r\n\r\n")
            except OSError:
                pass  # Envoy answered and closed before the body ended
        else:
            connection.request("POST", path, body, {"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_rest_body_gets_413_with_an_error(
    door: FrontDoor, chunked: bool
) -> None:
    data = [1.0] * (LIMIT // 4)
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(data) // 4, 4], "data": data}]}
    ).encode()
    assert len(body) > LIMIT
    status, kind, text = await asyncio.to_thread(
        _post, door.envoy.address, "/v2/models/m/infer", body, chunked=chunked
    )
    assert status == 413
    assert kind == "application/json"
    error = json.loads(text)["error"]
    assert f"front door's limit of {LIMIT} bytes" in error
    # A body under the limit still works.
    small = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    status, _, text = await asyncio.to_thread(
        _post, door.envoy.address, "/v2/models/m/versions/1/infer", json.dumps(small).encode(),
        chunked=chunked,
    )  # fmt: skip
    assert status == 200, text
    assert json.loads(text)["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]


# --------------------------------------------------------------------- ops and admin


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # LISTEN
                found.add(address)
    return found


async def test_the_ops_listener_answers_readiness_and_metrics_only(door: FrontDoor) -> None:
    ops = door.envoy.ops
    status, text = await asyncio.to_thread(_get, f"{ops}/ready")
    assert (status, text.strip()) == (200, "LIVE")
    status, text = await asyncio.to_thread(_get, f"{ops}/stats/prometheus")
    assert status == 200
    assert "envoy_cluster_upstream_rq_total" in text or "envoy_server_live" in text
    for path, method in [
        ("/quitquitquit", "POST"),
        ("/healthcheck/fail", "POST"),
        ("/config_dump", "GET"),
        ("/clusters", "GET"),
        ("/stats", "GET"),
        ("/ready", "POST"),
    ]:
        status, _ = await asyncio.to_thread(_get, f"{ops}{path}", method)
        assert status == 404, path
    # Still running and ready: nothing above reached the admin interface.
    assert door.envoy.process.poll() is None
    assert (await asyncio.to_thread(_get, f"{door.envoy.admin}/ready"))[0] == 200
    # The admin interface listens on loopback only; the ops listener where it is told.
    assert _listening_addresses(door.envoy.params.admin_port) == {"0100007F"}
    assert _listening_addresses(door.envoy.params.ops_port) == {"0100007F"}
    request = opb.ServerLiveRequest()
    assert (await door.clients.oip.ServerLive(request, timeout=5)).live
