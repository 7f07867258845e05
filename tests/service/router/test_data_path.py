"""ModelInfer through the front door (Envoy, routed by the router's configuration) against
a real registry and inference server: endpoints by policy, keys from a header or a request
parameter, plain model names by version, names Envoy cannot read, and an answer that says
who served it."""

from __future__ import annotations

import gzip
import json

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.inference.main import InferenceApp
from modelhub.router import bucketing
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    by_user,
    create_endpoint,
    infer_request,
    output,
    params,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub


async def test_endpoint_split_by_user_with_variant_in_answer(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(
        registry_api, "fraud", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    door = await front_doors()
    clients = door.clients
    seen = {}
    for user in range(40):
        call = clients.oip.ModelInfer(
            infer_request("fraud", request_id=f"req-{user}"), metadata=(("x-user-id", str(user)),)
        )
        response = await call
        expected = await clients.variant_of("endpoints/fraud", str(user))
        got = params(response)
        assert got["modelhub.variant"] == expected
        version = {"a": 1, "b": 2}[expected]
        assert got["modelhub.version"] == str(version)
        assert got["modelhub.model"] == "models/m"
        assert got["modelhub.endpoint"] == "endpoints/fraud"
        # Written once each on the wire (a map decodes the last one; count the entries).
        raw = response.SerializeToString()
        assert raw.count(b"modelhub.variant") == 1
        # The served version really answered: y = x + version.
        assert output(response).tolist() == [1.0 + version] * 4
        assert response.id == f"req-{user}"
        trailers = dict(await call.trailing_metadata())
        assert trailers["modelhub-variant"] == expected
        assert trailers["modelhub-version"] == str(version)
        seen[user] = expected
    assert set(seen.values()) == {"a", "b"}
    # Sticky: the same users get the same variants again; `endpoints/` names the same.
    for user in range(40):
        response = await clients.infer("endpoints/fraud", user=str(user))
        assert params(response)["modelhub.variant"] == seen[user]


async def test_key_from_a_request_parameter(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(
        registry_api,
        "ranker",
        [variant("a", 1, 50), variant("b", 2, 50)],
        sticky_key=rpb.StickyKey(source=rpb.StickyKey.PARAMETER, name="user"),
    )
    clients = (await front_doors()).clients
    served = set()
    for user in range(30):
        request = infer_request("ranker")
        if user % 2:
            request.parameters["user"].int64_param = user
        else:
            request.parameters["user"].string_param = str(user)
        request.parameters["other"].bool_param = True
        response = await clients.oip.ModelInfer(request)
        variant_name = params(response)["modelhub.variant"]
        assert variant_name == await clients.variant_of("endpoints/ranker", str(user))
        served.add(variant_name)
    assert served == {"a", "b"}
    # Leading fields past the filter's first 4 KiB window are read too (a large parameter).
    for user in ("u1", "u2", "u3", "u4"):
        request = infer_request("ranker")
        request.parameters["context"].string_param = "c" * 20_000
        request.parameters["user"].string_param = user
        response = await clients.oip.ModelInfer(request)
        expected = await clients.variant_of("endpoints/ranker", user)
        assert params(response)["modelhub.variant"] == expected


async def test_requests_without_key_are_random(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(
        registry_api, "e", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    clients = (await front_doors()).clients
    served = [params(await clients.infer("e"))["modelhub.variant"] for _ in range(60)]
    assert set(served) == {"a", "b"}


async def test_plain_model_names(registry_api: Stub, front_doors: FrontDoorFactory) -> None:
    clients = (await front_doors()).clients
    # No champion yet: the newest READY version.
    response = await clients.infer("m")
    assert (response.model_name, response.model_version) == ("m", "3")
    assert "modelhub.endpoint" not in params(response)
    assert output(response).tolist() == [4.0] * 4
    # An explicit version, and the models/ prefix.
    assert (await clients.infer("models/m", version="1")).model_version == "1"
    await registry_api.SetAlias(rpb.SetAliasRequest(parent="models/m", alias="champion", version=2))

    async def champion_served() -> bool:
        return (await clients.infer("m")).model_version == "2"

    await wait_for(champion_served)
    assert (await clients.infer("m", version="champion")).model_version == "2"


async def test_a_model_and_an_endpoint_of_the_same_name(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    # Endpoint `m` shadows model `m` unless a version (or `models/m`) is asked for.
    await create_endpoint(registry_api, "m", [variant("canary", 1, 1)])
    clients = (await front_doors()).clients
    assert params(await clients.infer("m"))["modelhub.variant"] == "canary"
    assert (await clients.infer("m", version="3")).model_version == "3"
    assert "modelhub.variant" not in params(await clients.infer("models/m"))


async def test_request_ids_are_echoed_and_attributable(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("only", 1, 1)])
    clients = (await front_doors()).clients
    # Without an id, the answer carries the id Envoy gave the request (x-request-id).
    response = await clients.infer("e")
    assert len(response.id) == 36
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.router.RecordOutcome(
            pb.RecordOutcomeRequest(request_id=response.id, value=1, kind="x")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # No monitor configured: the router says where outcomes go instead.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.router.RecordOutcome(pb.RecordOutcomeRequest(request_id=response.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_errors_a_client_can_act_on(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("only", 1, 1)])
    clients = (await front_doors()).clients
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("nope")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("m", version="9")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # No name at all: inference says model_name is required.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Malformed bytes: a generated stub cannot send them; use a raw method.
    raw = clients.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\x0a\x05fr", timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ModelInferRequest" in (caught.value.details() or "")
    # A name in the header longer than any name: refused by Envoy's routing filter.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.oip.ModelInfer(
            infer_request("e"), metadata=(("x-modelhub-model", "e" * 600),), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-modelhub-model header is longer than 512 bytes" in (caught.value.details() or "")
    # An inference error passes through with its code and message (wrong input shape).
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.oip.ModelInfer(infer_request("e", np.ones((1, 3))))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_compressed_requests_route_by_header_or_get_a_clear_error(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(
        registry_api, "e", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    door = await front_doors()
    async with grpc.aio.insecure_channel(
        door.envoy.address, compression=grpc.Compression.Gzip
    ) as channel:
        stub = door.clients.oip.__class__(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelInfer(infer_request("e"), metadata=(("x-user-id", "7"),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "x-modelhub-model" in (caught.value.details() or "")
        # Named in the header, the endpoint routes as usual (sticky by the key header).
        for user in ("7", "8", "9"):
            response = await stub.ModelInfer(
                infer_request("e"), metadata=(("x-user-id", user), ("x-modelhub-model", "e"))
            )
            expected = await door.clients.variant_of("endpoints/e", user)
            assert params(response)["modelhub.variant"] == expected
    assert gzip  # gzip is what grpc.Compression.Gzip puts on the wire


async def test_open_inference_protocol_metadata_calls(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("a", 1, 100)])
    clients = (await front_doors()).clients
    assert (await clients.oip.ServerLive(opb.ServerLiveRequest())).live
    assert (await clients.oip.ServerReady(opb.ServerReadyRequest())).ready
    metadata = await clients.oip.ServerMetadata(opb.ServerMetadataRequest())
    assert metadata.name == "modelhub-inference"
    # Ready means loaded on the inference server (the endpoint's variant: version 1).
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="e"))).ready
    await clients.infer("m", version="1")
    assert (await clients.oip.ModelReady(opb.ModelReadyRequest(name="e"))).ready
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="m", version="3"))).ready
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="nope"))).ready
    model = await clients.oip.ModelMetadata(opb.ModelMetadataRequest(name="e"))
    assert model.name == "e"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("x", "FP32", [-1, 4])]
    # Triton's ModelConfig names the model like ModelMetadata: the endpoint's variant answers.
    config = await clients.oip.ModelConfig(opb.ModelConfigRequest(name="e"))
    assert config.config.max_batch_size > 0
    assert [i.name for i in config.config.input] == ["x"]


async def test_routing_table_and_explanations(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 90), variant("b", 2, 10)],
        sticky_key=by_user(),
        fallback="a",
    )
    door = await front_doors()
    table = await door.clients.table()
    assert table.synced and table.revision > 0
    (endpoint,) = table.endpoints
    assert endpoint.name == "endpoints/e" and endpoint.sticky_key == "metadata:x-user-id"
    assert [
        (v.name, v.version, v.lower, v.upper, v.bucket_lower, v.bucket_upper)
        for v in endpoint.variants
    ] == [("a", 1, 0.0, 0.9, 0, 9000), ("b", 2, 0.9, 1.0, 9000, 10000)]
    assert [b.address for b in table.default_backends] == door.backends
    assert [(m.name, m.default_version, m.default_selector) for m in table.models] == [
        ("models/m", 3, "latest")
    ]
    explained = await door.clients.router.ExplainRoute(
        pb.ExplainRouteRequest(endpoint="endpoints/e", key="42")
    )
    salt = door.router.router.table.endpoints["e"].salt
    assert explained.bucket_index == bucketing.bucket(salt, "42")
    assert explained.buckets == bucketing.TOTAL
    assert explained.variant.name == ("a" if explained.bucket_index < 9000 else "b")
    assert "42" in explained.explanation and explained.fallback == "a"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await door.clients.router.ExplainRoute(pb.ExplainRouteRequest(endpoint="endpoints/nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    stats = await door.clients.stats()
    assert stats.config_writes >= 1 and stats.config_dir == str(door.xds_dir)


async def test_inference_metrics_know_the_variant(
    registry_api: Stub, front_doors: FrontDoorFactory, inference: InferenceApp
) -> None:
    """Envoy tells inference which variant a request is for; inference labels its request
    histogram with it. A client-sent parameter cannot create a label value."""
    await create_endpoint(registry_api, "e", [variant("canary", 2, 1)])
    clients = (await front_doors()).clients
    for _ in range(3):
        assert params(await clients.infer("e"))["modelhub.variant"] == "canary"
    request = infer_request("m", version="1")
    request.parameters["modelhub.variant"].string_param = "spoofed"
    await clients.oip.ModelInfer(request, metadata=(("x-modelhub-variant", "spoofed-too"),))
    body = generate_latest(inference.runtime.metrics_registry).decode()
    assert (
        'modelhub_inference_request_duration_seconds_count{code="OK",model="m",'
        'variant="canary",version="2"} 3.0' in body
    )
    assert "spoofed" not in body


async def test_access_log_keeps_failures_and_control_plane_calls(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    """By default Envoy logs every control-plane call and every failed inference call;
    successful inference calls are in the monitor's events instead."""
    await create_endpoint(registry_api, "e", [variant("only", 1, 1)])
    door = await front_doors()
    ok = await door.clients.infer("e", request_id="logged-not")
    with pytest.raises(grpc.aio.AioRpcError):
        await door.clients.infer("nope")
    await door.clients.oip.ServerLive(opb.ServerLiveRequest())
    async with grpc.aio.insecure_channel(door.envoy.address) as channel:
        await router_pb2_grpc.RouterServiceStub(channel).GetRoutingTable(
            pb.GetRoutingTableRequest()
        )

    def lines() -> list[dict[str, object]]:
        found = []
        for line in door.envoy.log.read_text().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    await wait_for(lambda: any("RouterService" in str(e["path"]) for e in lines()), 10.0)
    logged = lines()
    assert not any(e["request_id"] == ok.id for e in logged)
    assert any(e["model"] == "nope" and e["grpc_status"] == "NotFound" for e in logged), logged
    assert not any(str(e["path"]).endswith("/ServerLive") for e in logged)
