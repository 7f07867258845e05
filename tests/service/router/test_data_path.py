"""ModelInfer through the router, against a real registry and inference server: endpoints
by policy, plain model names by version, and an answer that says who served it."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import RouterFactory
from tests.service.router.helpers import (
    by_user,
    create_endpoint,
    infer_request,
    output,
    params,
    variant,
    variant_counters,
)

Stub = registry_pb2_grpc.RegistryServiceStub


async def test_endpoint_split_by_user_with_variant_in_answer(
    registry_api: Stub, routers: RouterFactory
) -> None:
    await create_endpoint(
        registry_api, "fraud", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    _, clients = await routers()
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
        # The served version really answered: y = x + version.
        assert output(response).tolist() == [1.0 + version] * 4
        assert response.id == f"req-{user}"
        trailers = dict(await call.trailing_metadata())
        assert trailers["modelhub-variant"] == expected
        assert trailers["modelhub-version"] == str(version)
        seen[user] = expected
    assert set(seen.values()) == {"a", "b"}
    # Sticky: the same users get the same variants again.
    for user in range(40):
        response = await clients.infer("fraud", user=str(user))
        assert params(response)["modelhub.variant"] == seen[user]
    counters = variant_counters(await clients.stats(), "endpoints/fraud")
    assert counters["a"].requests + counters["b"].requests == 80
    assert counters["a"].unkeyed == counters["b"].unkeyed == 0


async def test_key_from_a_request_parameter(registry_api: Stub, routers: RouterFactory) -> None:
    await create_endpoint(
        registry_api,
        "ranker",
        [variant("a", 1, 50), variant("b", 2, 50)],
        sticky_key=rpb.StickyKey(source=rpb.StickyKey.PARAMETER, name="user"),
    )
    _, clients = await routers()
    for user in range(20):
        request = infer_request("ranker")
        request.parameters["user"].int64_param = user
        response = await clients.oip.ModelInfer(request)
        assert params(response)["modelhub.variant"] == await clients.variant_of(
            "endpoints/ranker", str(user)
        )
        # The request's own parameters are echoed next to the router's.
        assert response.parameters["user"].int64_param == user


async def test_requests_without_key_are_random_and_counted(
    registry_api: Stub, routers: RouterFactory
) -> None:
    await create_endpoint(
        registry_api, "e", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    _, clients = await routers()
    served = {params(await clients.infer("e"))["modelhub.variant"] for _ in range(40)}
    assert served == {"a", "b"}
    counters = variant_counters(await clients.stats(), "endpoints/e")
    assert counters["a"].unkeyed + counters["b"].unkeyed == 40


async def test_plain_model_names(registry_api: Stub, routers: RouterFactory) -> None:
    _, clients = await routers()
    # No champion yet: the newest READY version.
    response = await clients.infer("m")
    assert (response.model_name, response.model_version) == ("m", "3")
    assert params(response)["modelhub.variant"] == ""
    assert output(response).tolist() == [4.0] * 4
    # An explicit version, and models/ prefix.
    assert (await clients.infer("models/m", version="1")).model_version == "1"
    # The champion alias wins once set, as soon as the registry says so.
    await registry_api.SetAlias(rpb.SetAliasRequest(parent="models/m", alias="champion", version=2))

    async def champion_served() -> bool:
        return (await clients.infer("m")).model_version == "2"

    from tests.service.router.helpers import wait_for

    await wait_for(champion_served)
    assert (await clients.infer("m", version="champion")).model_version == "2"


async def test_generated_request_ids_are_echoed_and_attributable(
    registry_api: Stub, routers: RouterFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("only", 1, 1)])
    _, clients = await routers()
    response = await clients.infer("e")
    assert len(response.id) == 24
    outcome = await clients.router.RecordOutcome(
        pb.RecordOutcomeRequest(request_id=response.id, value=1.0)
    )
    assert (outcome.attributed, outcome.endpoint, outcome.variant) == (
        True,
        "endpoints/e",
        "only",
    )
    assert (outcome.model, outcome.version) == ("models/m", 1)
    unknown = await clients.router.RecordOutcome(
        pb.RecordOutcomeRequest(request_id="never-seen", value=0.0)
    )
    assert not unknown.attributed
    stats = await clients.stats()
    assert (stats.outcomes_attributed, stats.outcomes_unattributed) == (1, 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.router.RecordOutcome(
            pb.RecordOutcomeRequest(request_id="x", value=1, kind="x")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_errors_a_client_can_act_on(registry_api: Stub, routers: RouterFactory) -> None:
    await create_endpoint(registry_api, "e", [variant("only", 1, 1)])
    _, clients = await routers()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("nope")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no endpoint or model named 'nope'" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.infer("m", version="9")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Malformed bytes: a generated stub cannot send them; use a raw method.
    raw = clients.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\x0a\x05fr")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(dict(caught.value.trailing_metadata())[STATUS_DETAILS_KEY])
    assert info is not None and info.reason == "MALFORMED_REQUEST"
    # An inference error passes through with its code and message (wrong input shape).
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.oip.ModelInfer(infer_request("e", np.ones((1, 3))))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(caught.value.trailing_metadata())
    assert trailers["modelhub-variant"] == "only"
    assert STATUS_DETAILS_KEY in trailers


async def test_open_inference_protocol_metadata_calls(
    registry_api: Stub, routers: RouterFactory
) -> None:
    await create_endpoint(registry_api, "e", [variant("a", 1, 50), variant("b", 2, 50)])
    _, clients = await routers()
    assert (await clients.oip.ServerLive(opb.ServerLiveRequest())).live
    assert (await clients.oip.ServerReady(opb.ServerReadyRequest())).ready
    metadata = await clients.oip.ServerMetadata(opb.ServerMetadataRequest())
    assert metadata.name == "modelhub-router"
    # Ready means loaded on the inference server: neither version is loaded yet (no
    # deployment; inference loads on the first request).
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="e"))).ready
    await clients.infer("m", version="1")
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="e"))).ready
    await clients.infer("m", version="2")
    assert (await clients.oip.ModelReady(opb.ModelReadyRequest(name="e"))).ready
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="m", version="3"))).ready
    assert not (await clients.oip.ModelReady(opb.ModelReadyRequest(name="nope"))).ready
    model = await clients.oip.ModelMetadata(opb.ModelMetadataRequest(name="e"))
    assert model.name == "e"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("x", "FP32", [-1, 4])]


async def test_routing_table_and_explanations(registry_api: Stub, routers: RouterFactory) -> None:
    await create_endpoint(
        registry_api,
        "e",
        [variant("a", 1, 90), variant("b", 2, 10)],
        sticky_key=by_user(),
        fallback="a",
    )
    app, clients = await routers()
    table = await clients.table()
    assert table.synced and table.revision > 0
    (endpoint,) = table.endpoints
    assert endpoint.name == "endpoints/e" and endpoint.sticky_key == "metadata:x-user-id"
    assert [(v.name, v.version, v.lower, v.upper) for v in endpoint.variants] == [
        ("a", 1, 0.0, 0.9),
        ("b", 2, 0.9, 1.0),
    ]
    assert endpoint.variants[0].backends[0].address == app.settings.backend_addresses[0]
    assert endpoint.variants[0].backends[0].healthy
    assert [(m.name, m.default_version, m.default_selector) for m in table.models] == [
        ("models/m", 3, "latest")
    ]
    explained = await clients.router.ExplainRoute(
        pb.ExplainRouteRequest(endpoint="endpoints/e", key="42")
    )
    assert explained.variant.name == ("a" if explained.bucket < 0.9 else "b")
    assert "42" in explained.explanation and explained.fallback == "a"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.router.ExplainRoute(pb.ExplainRouteRequest(endpoint="endpoints/nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_inference_metrics_know_the_variant(
    registry_api: Stub, routers: RouterFactory, inference: InferenceApp
) -> None:
    """The router tells inference which variant a request is for; inference labels its
    request histogram with it (direct calls get an empty variant)."""
    await create_endpoint(registry_api, "e", [variant("canary", 2, 1)])
    _, clients = await routers()
    for _ in range(3):
        assert params(await clients.infer("e"))["modelhub.variant"] == "canary"
    body = generate_latest(inference.runtime.metrics_registry).decode()
    assert (
        'modelhub_inference_request_duration_seconds_count{code="OK",model="m",'
        'variant="canary",version="2"} 3.0' in body
    )
