"""Protobuf ↔ router domain: registry watch events into `RegistryState` changes, routing
tables, explanations and counters into `modelhub.router.v1` messages."""

from __future__ import annotations

from collections.abc import Iterable

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.router import bucketing
from modelhub.router.routing import Explanation
from modelhub.router.table import (
    DeploymentSpec,
    EndpointRoute,
    EndpointSpec,
    KeySource,
    ModelRoute,
    RegistryState,
    RoutingTable,
    Selector,
    ShadowSpec,
    StickyKey,
    VariantRoute,
    VariantSpec,
)

# ---------------------------------------------------------------- registry → domain


def model_id(name: str) -> str:
    """`models/fraud`, `models/fraud/versions/3`, `models/fraud/aliases/x` → `fraud`."""
    parts = name.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "models" else ""


def selector_from_pb(msg: rpb.VersionSelector) -> Selector:
    which = msg.WhichOneof("selector")
    if which == "version":
        return Selector(version=msg.version)
    if which == "alias":
        return Selector(alias=msg.alias)
    return Selector()


_KEY_SOURCES = {
    rpb.StickyKey.METADATA: KeySource.METADATA,
    rpb.StickyKey.PARAMETER: KeySource.PARAMETER,
}


def endpoint_from_pb(msg: rpb.Endpoint) -> EndpointSpec:
    sticky = None
    if msg.HasField("sticky_key") and msg.sticky_key.name:
        source = _KEY_SOURCES.get(msg.sticky_key.source)
        if source is not None:
            # gRPC metadata keys are lowercase on the wire.
            name = msg.sticky_key.name
            sticky = StickyKey(source, name.lower() if source is KeySource.METADATA else name)
    return EndpointSpec(
        id=msg.name.removeprefix("endpoints/"),
        variants=tuple(
            VariantSpec(
                v.name, model_id(v.model), selector_from_pb(v.selector), v.weight, tuple(v.pool)
            )
            for v in msg.variants
        ),
        sticky_key=sticky,
        salt=msg.salt,
        shadows=tuple(
            ShadowSpec(
                s.name,
                model_id(s.model),
                selector_from_pb(s.selector),
                s.sample_rate,
                tuple(s.pool),
            )
            for s in msg.shadows
        ),
        fallback=msg.fallback,
    )


def deployment_from_pb(msg: rpb.Deployment) -> DeploymentSpec:
    return DeploymentSpec(
        id=msg.name.removeprefix("deployments/"),
        model=model_id(msg.model),
        selectors=tuple(selector_from_pb(s) for s in msg.versions) or (Selector(),),
    )


def apply_event(state: RegistryState, event: rpb.WatchEvent) -> bool:
    """Apply one PUT or DELETE to `state`; False for events that change nothing routed."""
    put = event.type == rpb.WatchEvent.PUT
    if event.type not in (rpb.WatchEvent.PUT, rpb.WatchEvent.DELETE):
        return False
    kind = event.kind
    if kind == rpb.MODEL:
        model = model_id(event.name)
        if put:
            state.put_model(model)
        else:
            state.delete_model(model)
    elif kind == rpb.MODEL_VERSION:
        model = model_id(event.name)
        number = int(event.name.rsplit("/", 1)[-1])
        if put:
            state.put_version(model, number, event.version.status == rpb.ModelVersion.READY)
        else:
            state.delete_version(model, number)
    elif kind == rpb.ALIAS:
        model = model_id(event.name)
        alias = event.name.rsplit("/", 1)[-1]
        if put:
            state.put_alias(model, alias, event.alias.version)
        else:
            state.delete_alias(model, alias)
    elif kind == rpb.ENDPOINT:
        if put:
            state.put_endpoint(endpoint_from_pb(event.endpoint))
        else:
            state.delete_endpoint(event.name.removeprefix("endpoints/"))
    elif kind == rpb.DEPLOYMENT:
        if put:
            state.put_deployment(deployment_from_pb(event.deployment))
        else:
            state.delete_deployment(event.name.removeprefix("deployments/"))
    else:
        return False
    return True


# ------------------------------------------------------------------- domain → router


def backends_to_pb(addresses: Iterable[str]) -> list[pb.Backend]:
    return [pb.Backend(address=address) for address in addresses]


def variant_to_pb(variant: VariantRoute) -> pb.VariantRoute:
    spec = variant.spec
    total = bucketing.TOTAL
    return pb.VariantRoute(
        name=spec.name,
        model=f"models/{spec.model}",
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
                model=f"models/{s.spec.model}",
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
        name=f"models/{route.id}",
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
