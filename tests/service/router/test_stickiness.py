"""Stickiness across router instances: 10,000 keys get the same variant from two routers
and from a router started afresh, each with its own routing table built from the registry
watch and nothing shared between them; the split matches the weights.

All 10,000 keys go through each router's routing decision (`Router.route`, what ModelInfer
calls); a sample also goes through ModelInfer and ExplainRoute over gRPC, with real
inference behind, to show the served variant is that decision. (tests/e2e runs the same
check against router processes; tests/unit shows another interpreter agrees.)"""

from __future__ import annotations

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.inference.main import InferenceApp
from modelhub.router.main import RouterApp
from tests.service.router.conftest import RouterFactory
from tests.service.router.helpers import (
    Clients,
    by_user,
    create_endpoint,
    params,
    start_router,
    variant,
)

KEYS = [f"user-{i}" for i in range(10_000)]


def assignments(app: RouterApp) -> list[str]:
    return [app.router.route("ab", "", lambda _sticky, k=k: k).target.variant for k in KEYS]


async def test_ten_thousand_keys_same_variant_on_two_routers_and_after_restart(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    registry_address: str,
    inference: InferenceApp,
    routers: RouterFactory,
) -> None:
    await create_endpoint(
        registry_api, "ab", [variant("a", 1, 70), variant("b", 2, 30)], sticky_key=by_user()
    )
    first_app, first = await routers()
    second_app, second = await routers()
    assert first_app.router.table is not second_app.router.table
    on_first = assignments(first_app)
    assert assignments(second_app) == on_first

    # The split matches the weights within ±2 percentage points.
    share_a = on_first.count("a") / len(KEYS)
    assert abs(share_a - 0.70) <= 0.02, share_a

    # Over gRPC, on either router, the served variant is that decision.
    for index in range(0, len(KEYS), 100):
        key, expected = KEYS[index], on_first[index]
        clients = first if index % 200 else second
        response = await clients.infer("ab", user=key)
        assert params(response)["modelhub.variant"] == expected
        assert await clients.variant_of("endpoints/ab", key) == expected

    # A router started afresh (a new table from a new watch) agrees key for key.
    await first_app.stop(0)
    restarted = await start_router(registry_address, [inference.address])
    clients = Clients.connect(restarted.address)
    try:
        assert assignments(restarted) == on_first
        response = await clients.infer("ab", user=KEYS[7])
        assert params(response)["modelhub.variant"] == on_first[7]
    finally:
        await clients.close()
        await restarted.stop(0)
