"""Router domain → `modelhub.router.v1` messages: routing tables, explanations, counters and
the fleet's replicas.
(The registry's messages become the router's state through the contract's one set of
conversions, `modelhub.common.registry_view`.)"""

from __future__ import annotations

from collections.abc import Iterable

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.common.names import model_name
from modelhub.common.timestamps import timestamp_of
from modelhub.router import bucketing
from modelhub.router.fleet import Health, Replica
from modelhub.router.routing import Explanation
from modelhub.router.table import (
    EndpointRoute,
    ModelRoute,
    RoutingTable,
    VariantRoute,
)

# ------------------------------------------------------------------- domain → router


def backends_to_pb(addresses: Iterable[str]) -> list[pb.Backend]:
    return [pb.Backend(address=address) for address in addresses]


def variant_to_pb(variant: VariantRoute) -> pb.VariantRoute:
    spec = variant.spec
    total = bucketing.TOTAL
    return pb.VariantRoute(
        name=spec.name,
        model=model_name(spec.model),
        # What Envoy routes to now (a newly resolved version is held until it is ready).
        version=variant.target.version if variant.target is not None else variant.version,
        weight=spec.weight,
        lower=variant.range.lower / total,
        upper=variant.range.upper / total,
        bucket_lower=variant.range.lower,
        bucket_upper=variant.range.upper,
        buckets=total,
        backends=backends_to_pb(spec.pool),
        selector=spec.selector.describe(),
        deployed=variant.deployed,
    )


def endpoint_to_pb(endpoint: EndpointRoute) -> pb.EndpointRoute:
    return pb.EndpointRoute(
        name=endpoint.name,
        sticky_key=endpoint.sticky_key.describe() if endpoint.sticky_key else "",
        variants=[variant_to_pb(v) for v in endpoint.variants],
        shadows=[
            pb.ShadowRoute(
                name=s.spec.name,
                model=model_name(s.spec.model),
                version=s.version,
                sample_rate=s.spec.sample_rate,
                backends=backends_to_pb(s.spec.pool),
                selector=s.spec.selector.describe(),
            )
            for s in endpoint.shadows
        ],
        fallback=endpoint.fallback.spec.name if endpoint.fallback else "",
    )


def model_route_to_pb(route: ModelRoute) -> pb.ModelRoute:
    return pb.ModelRoute(
        name=model_name(route.id),
        default_version=route.default,
        default_selector=route.default_selector,
        ready_versions=sorted(route.ready, reverse=True),
    )


def table_to_pb(table: RoutingTable, default_pool: Iterable[str]) -> pb.RoutingTable:
    return pb.RoutingTable(
        revision=table.revision,
        endpoints=[endpoint_to_pb(table.endpoints[k]) for k in sorted(table.endpoints)],
        models=[model_route_to_pb(table.models[k]) for k in sorted(table.models)],
        default_backends=backends_to_pb(default_pool),
        synced=table.synced,
    )


def explanation_to_pb(explanation: Explanation) -> pb.ExplainRouteResponse:
    endpoint = explanation.endpoint
    response = pb.ExplainRouteResponse(
        endpoint=endpoint.name,
        key=explanation.key,
        bucket=explanation.bucket / bucketing.TOTAL,
        bucket_index=explanation.bucket,
        buckets=bucketing.TOTAL,
        mirrored_to=explanation.mirrored_to,
        sticky_key=endpoint.sticky_key.describe() if endpoint.sticky_key else "",
        fallback=endpoint.fallback.spec.name if endpoint.fallback else "",
        explanation=explanation.text,
    )
    if explanation.variant is not None:
        response.variant.CopyFrom(variant_to_pb(explanation.variant))
    return response


# ------------------------------------------------------------------- the fleet

_HEALTH = {
    Health.SERVING: pb.SERVING,
    Health.NOT_SERVING: pb.NOT_SERVING,
    Health.UNREACHABLE: pb.UNREACHABLE,
}


def replica_to_pb(replica: Replica[ipb.ModelIndexEntry]) -> pb.Replica:
    index = replica.index
    return pb.Replica(
        address=replica.address,
        health=_HEALTH[replica.health],
        reason=replica.reason,
        server_version=index.server_version,
        devices=list(index.devices),
        memory_used_bytes=index.memory_used_bytes,
        memory_budget_bytes=index.memory_budget_bytes,
        models=list(index.entries),
        observe_time=timestamp_of(replica.observe_time),
    )
