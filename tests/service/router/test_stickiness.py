"""Stickiness in the proxy: Envoy's routing filter and the router's ExplainRoute compute
the same function. 10,000 keys go through Envoy (real inference behind it, the variant
read from each answer) and through ExplainRoute, and agree; a second Envoy replica, with
its own router and configuration directory, and an Envoy restarted afresh give every key
the same variant; a 90/10 → 80/20 change moves exactly the keys of one bucket range, all
toward the variant that grew; the split matches the weights within ±2 points."""

from __future__ import annotations

from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.router import bucketing
from tests.service.router.conftest import FrontDoor, FrontDoorFactory
from tests.service.router.helpers import (
    Clients,
    by_user,
    create_endpoint,
    start_envoy,
    variant,
    variants_of,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub
KEYS = [f"user-{i}" for i in range(10_000)]
SAMPLE = KEYS[::25]  # 400 keys for the checks that repeat the walk


async def set_weights(stub: Stub, endpoint: str, *variants: rpb.Variant) -> None:
    await stub.UpdateEndpoint(
        rpb.UpdateEndpointRequest(
            endpoint=rpb.Endpoint(name=f"endpoints/{endpoint}", variants=list(variants)),
            update_mask=FieldMask(paths=["variants"]),
        )
    )


async def explained(door: FrontDoor, keys: list[str]) -> dict[str, str]:
    return {k: await door.clients.variant_of("endpoints/ab", k) for k in keys}


async def test_envoy_and_explain_route_agree_on_ten_thousand_keys(
    registry_api: Stub, front_doors: FrontDoorFactory, tmp_path: object
) -> None:
    await create_endpoint(
        registry_api, "ab", [variant("a", 1, 90), variant("b", 2, 10)], sticky_key=by_user()
    )
    door = await front_doors()
    await wait_for(lambda: door.clients.variant("ab", "probe"))
    served = await variants_of(door.clients, "ab", KEYS)
    expected = await explained(door, KEYS)
    assert served == expected
    share_b = sum(v == "b" for v in served.values()) / len(KEYS)
    assert abs(share_b - 0.10) <= 0.02, share_b
    # The bucket function the filter computed is the documented one.
    for key in KEYS[:200]:
        u = bucketing.bucket(door.router.router.table.endpoints["ab"].salt, key)
        assert served[key] == ("a" if u < 9000 else "b")

    # 90/10 → 80/20: exactly the keys with buckets in [8000, 9000) move, all a → b.
    await set_weights(registry_api, "ab", variant("a", 1, 80), variant("b", 2, 20))
    salt = door.router.router.table.endpoints["ab"].salt
    moved_key = next(k for k in KEYS if 8000 <= bucketing.bucket(salt, k) < 9000)
    await wait_for(lambda: _is(door.clients, moved_key, "b"), 5.0)
    after = await variants_of(door.clients, "ab", KEYS)
    moved = {k for k in KEYS if after[k] != served[k]}
    assert moved == {k for k in KEYS if 8000 <= bucketing.bucket(salt, k) < 9000}
    assert all(served[k] == "a" and after[k] == "b" for k in moved)
    assert after == await explained(door, KEYS)


async def _is(clients: Clients, key: str, expected: str) -> bool:
    return await clients.variant("ab", key) == expected


async def test_same_variant_on_two_envoy_replicas_and_after_restart(
    registry_api: Stub, front_doors: FrontDoorFactory, registry_address: str, tmp_path: object
) -> None:
    await create_endpoint(
        registry_api, "ab", [variant("a", 1, 70), variant("b", 2, 30)], sticky_key=by_user()
    )
    first = await front_doors()
    second = await front_doors()  # its own router, its own directory, its own Envoy
    assert first.xds_dir != second.xds_dir
    await wait_for(lambda: first.clients.variant("ab", "probe"))
    await wait_for(lambda: second.clients.variant("ab", "probe"))
    one = await variants_of(first.clients, "ab", SAMPLE)
    two = await variants_of(second.clients, "ab", SAMPLE)
    assert one == two
    assert set(one.values()) == {"a", "b"}

    # Envoy restarted afresh on the configuration its router left: the same answers.
    await first.envoy.stop()
    restarted = await start_envoy(
        first.envoy.log.parent,
        first.xds_dir,
        inference=first.backends,
        router=first.router.address,
        registry=registry_address,
        name="envoy-restarted",
    )
    clients = Clients.connect(restarted.address, first.router.address)
    try:
        await wait_for(lambda: clients.variant("ab", "probe"))
        assert await variants_of(clients, "ab", SAMPLE) == one
    finally:
        await clients.close()
        await restarted.stop()


async def test_long_keys_stick_like_short_ones(
    registry_api: Stub, front_doors: FrontDoorFactory
) -> None:
    """Keys of several kilobytes (a token, a serialized session) are hashed whole by Envoy's
    routing filter, as ExplainRoute hashes them: same variant, and both variants occur.
    (Up to 4 KB: inference's gRPC server refuses request metadata over 8 KiB in all.)"""
    await create_endpoint(
        registry_api, "ab", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    door = await front_doors()
    await wait_for(lambda: door.clients.variant("ab", "probe"))
    keys = [f"{i}-" + "k" * (1000 * (1 + i % 4)) for i in range(40)]
    served = await variants_of(door.clients, "ab", keys)
    assert served == await explained(door, keys)
    assert set(served.values()) == {"a", "b"}
