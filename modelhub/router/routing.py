"""Routing decisions: request name, version and sticky key → the target that serves it,
the fallback, and the shadows that get a copy. Transport-neutral; the gRPC edge supplies
the request fields and makes the calls."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from modelhub.common.errors import InvalidArgumentError, NotFoundError, UnavailableError
from modelhub.router import bucketing
from modelhub.router.stats import RouterCounters
from modelhub.router.table import (
    EndpointRoute,
    RoutingTable,
    ShadowRoute,
    StickyKey,
    Target,
    VariantRoute,
)

KeyLookup = Callable[[StickyKey], str | None]

_NO_SHADOWS: tuple[ShadowRoute, ...] = ()


class Decision:
    """Where one request goes."""

    __slots__ = ("endpoint", "fallback", "key", "shadows", "target")

    def __init__(
        self,
        endpoint: EndpointRoute | None,
        target: Target,
        fallback: Target | None,
        shadows: tuple[ShadowRoute, ...] | list[ShadowRoute],
        key: str,
    ) -> None:
        self.endpoint = endpoint
        self.target = target
        self.fallback = fallback  # serves when `target` answers UNAVAILABLE
        self.shadows = shadows  # sampled for this request
        self.key = key  # "" when unkeyed

    def key_hash(self) -> str:
        if not self.key or self.endpoint is None:
            return ""
        return bucketing.key_hash(self.endpoint.salt, self.key)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a key gets the variant it gets."""

    endpoint: EndpointRoute
    key: str
    bucket: float
    variant: VariantRoute | None
    mirrored_to: list[str]
    text: str


class Router:
    """Routes by the current routing table; `swap` replaces the table atomically."""

    def __init__(
        self,
        table: RoutingTable,
        counters: RouterCounters,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.counters = counters
        self._random = (rng or random.Random()).random

    def swap(self, table: RoutingTable) -> None:
        # One reference assignment: a request routes by the old or the new table, whole.
        self.table = table

    def route(self, name: str, version: str, key_of: KeyLookup) -> Decision:
        """Decide where a request for `name` (endpoint or model) and `version` goes.

        An endpoint is routed by its policy; a model name goes to `version` (a number or
        an alias) or, without one, to the model's default version. A name that is both
        an endpoint and a model means the endpoint, unless a version is given.
        """
        table = self.table
        if not table.synced:
            raise UnavailableError(
                "the router has not received the routing table from the registry yet",
                reason="ROUTING_TABLE_NOT_SYNCED",
            )
        if "/" in name:
            kind, _, name = name.partition("/")
            if kind == "endpoints":
                if version:
                    raise InvalidArgumentError(
                        "leave model_version empty for an endpoint: the endpoint chooses the "
                        "version",
                        field="model_version",
                    )
                endpoint = table.endpoints.get(name)
                if endpoint is not None:
                    return self._route_endpoint(endpoint, key_of)
                self.counters.not_found += 1
                raise NotFoundError(f"no endpoint named endpoints/{name}", reason="NO_ROUTE")
            if kind != "models":
                raise InvalidArgumentError(
                    f"model_name must be an endpoint or model id, `endpoints/{{id}}` or "
                    f"`models/{{id}}`; got {kind}/{name!r}",
                    field="model_name",
                )
        elif not version:
            endpoint = table.endpoints.get(name)
            if endpoint is not None:
                return self._route_endpoint(endpoint, key_of)
        if not name:
            raise InvalidArgumentError("model_name is required", field="model_name")
        model = table.models.get(name)
        if model is None:
            if name in table.endpoints:
                raise InvalidArgumentError(
                    f"{name!r} is an endpoint: leave model_version empty for an endpoint, "
                    "the endpoint chooses the version",
                    field="model_version",
                )
            self.counters.not_found += 1
            raise NotFoundError(
                f"no endpoint or model named {name!r}", reason="NO_ROUTE", metadata={"name": name}
            )
        if not version:
            number = model.default
            if not number:
                raise NotFoundError(
                    f"model {name!r} has no READY version", reason="NO_READY_VERSION"
                )
        elif version.isdigit():
            number = int(version)
            if number not in model.ready:
                raise NotFoundError(
                    f"model {name!r} has no READY version {number}",
                    reason="NO_READY_VERSION",
                    metadata={"version": version},
                )
        else:
            number = model.aliases.get(version, 0)
            if not number:
                raise NotFoundError(
                    f"model {name!r} has no alias {version!r} on a READY version",
                    reason="NO_SUCH_ALIAS",
                )
        return Decision(None, model.target(number), None, _NO_SHADOWS, "")

    def _route_endpoint(self, endpoint: EndpointRoute, key_of: KeyLookup) -> Decision:
        sticky = endpoint.sticky_key
        key = (key_of(sticky) or "") if sticky is not None else ""
        u = bucketing.bucket(endpoint.salt, key) if key else self._random()
        variant = endpoint.pick(u)
        fallback_route = endpoint.fallback
        fallback = (
            fallback_route.target
            if fallback_route is not None and fallback_route is not variant
            else None
        )
        target = variant.target
        if not key:
            counters = target.counters if target is not None else None
            if counters is not None:
                counters.unkeyed += 1
        if target is None:
            # The variant's selector resolves to no READY version (alias deleted, version
            # archived): the fallback serves, or the request fails as UNAVAILABLE.
            if fallback is None:
                raise UnavailableError(
                    f"variant {variant.spec.name!r} of {endpoint.name} resolves to no READY "
                    f"version of models/{variant.spec.model} ({variant.spec.selector.describe()})",
                    reason="VARIANT_UNRESOLVED",
                )
            target, fallback = fallback, None
        shadows: list[ShadowRoute] | tuple[ShadowRoute, ...] = _NO_SHADOWS
        if endpoint.shadows:
            shadows = [s for s in endpoint.shadows if self._mirrored(endpoint, s, key)]
        return Decision(endpoint, target, fallback, shadows, key)

    def _mirrored(self, endpoint: EndpointRoute, shadow: ShadowRoute, key: str) -> bool:
        rate = shadow.spec.sample_rate
        if shadow.target is None or rate <= 0:
            return False
        if rate >= 1:
            return True
        if key:
            return bucketing.sample_bucket(endpoint.salt, shadow.spec.name, key) < rate
        return self._random() < rate

    def explain(self, endpoint_name: str, key: str) -> Explanation:
        """What `route` does with `key` on an endpoint, and a sentence saying why."""
        name = endpoint_name.removeprefix("endpoints/")
        if not name:
            raise InvalidArgumentError("endpoint is required", field="endpoint")
        endpoint = self.table.endpoints.get(name)
        if endpoint is None:
            raise NotFoundError(f"no endpoint named endpoints/{name}", reason="NO_ROUTE")
        if not key:
            return Explanation(
                endpoint,
                key,
                0.0,
                None,
                [],
                "no key: the request gets a random variant (counted as unkeyed), with "
                "probability equal to each variant's share of the weights",
            )
        u = bucketing.bucket(endpoint.salt, key)
        variant = endpoint.pick(u)
        mirrored = [s.spec.name for s in endpoint.shadows if self._mirrored(endpoint, s, key)]
        spec = variant.spec
        text = (
            f"key {key!r} hashes to bucket {u:.6f}, in [{variant.range.lower:.6f}, "
            f"{variant.range.upper:.6f}) of variant {spec.name!r} "
            f"(models/{spec.model} {spec.selector.describe()}"
        )
        if not variant.version:
            text += ", unresolved)"
        elif spec.selector.version is None:
            text += f" = version {variant.version})"
        else:
            text += ")"
        if variant.target is None and endpoint.fallback is not None:
            text += f"; it resolves to no version, so fallback {endpoint.fallback.spec.name!r}"
            text += " serves"
        if endpoint.sticky_key is None:
            text += (
                "; note: the endpoint has no sticky key, so real requests pick at random "
                "and this key would not be used"
            )
        return Explanation(endpoint, key, u, variant, mirrored, text)
