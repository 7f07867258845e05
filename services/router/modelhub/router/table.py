"""The router's copy of the registry, and the routing table built from it.

`RegistryState` is the mutable copy the registry watch keeps current: models, READY
versions, aliases, deployments and endpoints, in the registry contract's types
(`modelhub.common.contract`; `Selector` is its `VersionSelector`). `build_table` turns it
into an immutable `RoutingTable` snapshot in which every selector is already resolved to a
version number and every bucket range computed; `xds` writes it as Envoy's configuration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelhub.common.contract import (
    LATEST,
    DeploymentSpec,
    EndpointSpec,
    EventType,
    KeySource,
    ResourceKind,
    ShadowSpec,
    StickyKey,
    VariantSpec,
    WatchEvent,
)
from modelhub.common.contract import VersionSelector as Selector
from modelhub.router.bucketing import Range, Ranges

__all__ = [
    "LATEST",
    "MAX_SHADOWS",
    "Chooser",
    "DeploymentSpec",
    "EndpointRoute",
    "EndpointSpec",
    "KeySource",
    "ModelRoute",
    "RegistryState",
    "RoutingTable",
    "Selector",
    "ShadowRoute",
    "ShadowSpec",
    "StickyKey",
    "Target",
    "VariantRoute",
    "VariantSpec",
    "build_table",
    "empty_table",
]

log = logging.getLogger("modelhub.router.table")

MAX_SHADOWS = 8  # shadows Envoy mirrors to per endpoint (the first eight, in order)


# ----------------------------------------------------------------------- registry state


@dataclass
class RegistryState:
    """The part of the registry the router routes by. Mutated only by the registry watch;
    readers use the `RoutingTable` built from it."""

    revision: int = 0
    models: set[str] = field(default_factory=set)
    # model → version number → READY?
    versions: dict[str, dict[int, bool]] = field(default_factory=dict)
    # model → alias → version number
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)
    endpoints: dict[str, EndpointSpec] = field(default_factory=dict)
    deployments: dict[str, DeploymentSpec] = field(default_factory=dict)

    def put_model(self, model: str) -> None:
        self.models.add(model)

    def delete_model(self, model: str) -> None:
        self.models.discard(model)
        self.versions.pop(model, None)
        self.aliases.pop(model, None)

    def put_version(self, model: str, version: int, ready: bool) -> None:
        self.models.add(model)
        self.versions.setdefault(model, {})[version] = ready

    def delete_version(self, model: str, version: int) -> None:
        self.versions.get(model, {}).pop(version, None)

    def put_alias(self, model: str, alias: str, version: int) -> None:
        self.aliases.setdefault(model, {})[alias] = version

    def delete_alias(self, model: str, alias: str) -> None:
        self.aliases.get(model, {}).pop(alias, None)

    def put_endpoint(self, endpoint: EndpointSpec) -> None:
        self.endpoints[endpoint.id] = endpoint

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)

    def put_deployment(self, deployment: DeploymentSpec) -> None:
        self.deployments[deployment.id] = deployment

    def delete_deployment(self, deployment_id: str) -> None:
        self.deployments.pop(deployment_id, None)

    def apply(self, event: WatchEvent) -> bool:
        """Apply one PUT or DELETE; False for events that change nothing routed."""
        if event.type not in (EventType.PUT, EventType.DELETE):
            return False
        apply = _APPLY.get(event.kind)
        if apply is None:
            return False
        apply(self, event, event.type is EventType.PUT)
        return True

    def ready_versions(self, model: str) -> list[int]:
        """READY version numbers of `model`, newest first."""
        return sorted(
            (v for v, ready in self.versions.get(model, {}).items() if ready), reverse=True
        )

    def resolve(self, model: str, selector: Selector) -> int:
        """The READY version `selector` picks now, or 0 when it picks none (unknown number,
        archived version, missing alias, no READY version)."""
        versions = self.versions.get(model, {})
        if selector.version is not None:
            number = selector.version
        elif selector.alias is not None and selector.alias != LATEST:
            number = self.aliases.get(model, {}).get(selector.alias, 0)
        else:
            ready = self.ready_versions(model)
            return ready[0] if ready else 0
        return number if versions.get(number) else 0

    def deployed(self) -> set[tuple[str, int]]:
        """(model, version) pairs some deployment keeps loaded."""
        loaded: set[tuple[str, int]] = set()
        for deployment in self.deployments.values():
            for selector in deployment.selectors:
                number = self.resolve(deployment.model, selector)
                if number:
                    loaded.add((deployment.model, number))
        return loaded


def _model_event(state: RegistryState, event: WatchEvent, put: bool) -> None:
    if put:
        state.put_model(event.model)
    else:
        state.delete_model(event.model)


def _version_event(state: RegistryState, event: WatchEvent, put: bool) -> None:
    if put:
        ready = event.version is not None and event.version.ready
        state.put_version(event.model, event.number, ready)
    else:
        state.delete_version(event.model, event.number)


def _alias_event(state: RegistryState, event: WatchEvent, put: bool) -> None:
    if put:
        state.put_alias(event.model, event.alias, event.number)
    else:
        state.delete_alias(event.model, event.alias)


def _endpoint_event(state: RegistryState, event: WatchEvent, put: bool) -> None:
    if put and event.endpoint is not None:
        state.put_endpoint(event.endpoint)
    elif not put:
        state.delete_endpoint(event.id)


def _deployment_event(state: RegistryState, event: WatchEvent, put: bool) -> None:
    if put and event.deployment is not None:
        state.put_deployment(event.deployment)
    elif not put:
        state.delete_deployment(event.id)


_APPLY: dict[ResourceKind, Callable[[RegistryState, WatchEvent, bool], None]] = {
    ResourceKind.MODEL: _model_event,
    ResourceKind.MODEL_VERSION: _version_event,
    ResourceKind.ALIAS: _alias_event,
    ResourceKind.ENDPOINT: _endpoint_event,
    ResourceKind.DEPLOYMENT: _deployment_event,
}


# ------------------------------------------------------------------------ routing table


class Target:
    """A resolved destination: one model version on one pool of inference replicas (the
    addresses; empty = the default pool)."""

    __slots__ = ("endpoint", "model", "pool", "variant", "version")

    def __init__(
        self, endpoint: str, variant: str, model: str, version: int, pool: tuple[str, ...]
    ) -> None:
        self.endpoint = endpoint  # `endpoints/{e}` or "" for a plain model route
        self.variant = variant
        self.model = model  # model id (`fraud`)
        self.version = version
        self.pool = pool

    def __repr__(self) -> str:
        return f"Target({self.endpoint!r}, {self.variant!r}, models/{self.model}@{self.version})"


@dataclass(frozen=True, slots=True)
class VariantRoute:
    spec: VariantSpec
    range: Range
    version: int  # 0: unresolved
    deployed: bool
    target: Target | None  # None when unresolved


@dataclass(frozen=True, slots=True)
class ShadowRoute:
    spec: ShadowSpec
    version: int
    target: Target | None


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    """One endpoint, resolved."""

    id: str
    name: str  # `endpoints/{id}`
    sticky_key: StickyKey | None
    salt: str
    variants: tuple[VariantRoute, ...]
    ranges: Ranges
    shadows: tuple[ShadowRoute, ...]
    fallback: VariantRoute | None

    def pick(self, u: int) -> VariantRoute:
        return self.variants[self.ranges.pick(u)]


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A plain model name: its default version and its READY versions."""

    id: str
    ready: frozenset[int]
    aliases: dict[str, int]  # alias → READY version
    default: int
    default_selector: str


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """An immutable snapshot: what Envoy routes by until the next one."""

    revision: int
    synced: bool
    endpoints: dict[str, EndpointRoute]
    models: dict[str, ModelRoute]
    built_at: float = field(default_factory=time.monotonic)

    def active_versions(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(endpoint, variant) → (model, version) this table routes to."""
        return {
            (endpoint.name, variant.spec.name): (variant.target.model, variant.target.version)
            for endpoint in self.endpoints.values()
            for variant in endpoint.variants
            if variant.target is not None
        }


def empty_table() -> RoutingTable:
    """The table before the registry's initial state arrived: routes nothing."""
    return RoutingTable(0, False, {}, {})


# Which (model, version) a variant may route to now, given the one it resolves to:
# (endpoint, variant, model, version, pool) → (model, version). See readiness.py.
Chooser = Callable[[str, str, str, int, tuple[str, ...]], tuple[str, int]]


def _as_resolved(
    endpoint: str, variant: str, model: str, version: int, pool: tuple[str, ...]
) -> tuple[str, int]:
    return model, version


def _endpoint_route(
    spec: EndpointSpec,
    state: RegistryState,
    deployed: set[tuple[str, int]],
    choose: Chooser,
) -> EndpointRoute:
    name = f"endpoints/{spec.id}"
    ranges = Ranges([v.weight for v in spec.variants])
    variants = []
    for variant, bucket_range in zip(spec.variants, ranges.ranges, strict=True):
        version = state.resolve(variant.model, variant.selector)
        is_deployed = (variant.model, version) in deployed
        target = None
        if version:
            pool = variant.pool
            model, served = variant.model, version
            if is_deployed:
                # A deployment has the inference servers load it now: worth waiting for.
                # Any other version loads on its first request, so there is nothing to
                # wait for. `version` stays what the selector resolves to; the target is
                # what is served meanwhile.
                model, served = choose(name, variant.name, model, version, pool)
            target = Target(name, variant.name, model, served, pool)
        variants.append(VariantRoute(variant, bucket_range, version, is_deployed, target))
    shadows = []
    for shadow in spec.shadows:
        version = state.resolve(shadow.model, shadow.selector)
        target = None
        if version:
            target = Target(name, shadow.name, shadow.model, version, shadow.pool)
        shadows.append(ShadowRoute(shadow, version, target))
    fallback = next((v for v in variants if v.spec.name == spec.fallback), None)
    return EndpointRoute(
        spec.id,
        name,
        spec.sticky_key,
        spec.salt,
        tuple(variants),
        ranges,
        tuple(shadows),
        fallback,
    )


def build_table(
    state: RegistryState,
    default_alias: str,
    synced: bool = True,
    choose: Chooser = _as_resolved,
) -> RoutingTable:
    """Resolve `state` into a routing table. `default_alias` is the alias a plain model
    name goes to when the request names no version (empty: always the newest READY);
    `choose` may hold a variant on its current version while a new one gets ready."""
    deployed = state.deployed()
    endpoints: dict[str, EndpointRoute] = {}
    for spec in state.endpoints.values():
        try:
            endpoints[spec.id] = _endpoint_route(spec, state, deployed, choose)
        except ValueError as exc:
            # Weights the registry refuses (no positive weight): nothing to route to.
            log.warning("endpoints/%s not routable: %s", spec.id, exc)
            continue
    models: dict[str, ModelRoute] = {}
    for model in state.models:
        ready = state.ready_versions(model)
        default, why = 0, LATEST
        if default_alias:
            default = state.resolve(model, Selector(alias=default_alias))
            why = f"alias {default_alias}"
        if not default:
            default, why = (ready[0] if ready else 0), LATEST
        aliases = {
            alias: number
            for alias, number in state.aliases.get(model, {}).items()
            if number in ready
        }
        models[model] = ModelRoute(model, frozenset(ready), aliases, default, why)
    return RoutingTable(state.revision, synced, endpoints, models)
