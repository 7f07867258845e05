"""Why a key gets the variant it gets: `ExplainRoute`, computed with the same function as
Envoy's bucket filter (`bucketing`), over the routing table the router last wrote."""

from __future__ import annotations

from dataclasses import dataclass

from modelhub.common.errors import InvalidArgumentError, NotFoundError
from modelhub.router import bucketing
from modelhub.router.table import (
    MAX_SHADOWS,
    EndpointRoute,
    RoutingTable,
    ShadowRoute,
    VariantRoute,
)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a key gets the variant it gets."""

    endpoint: EndpointRoute
    key: str
    bucket: int
    variant: VariantRoute | None
    mirrored_to: list[str]
    text: str


def mirrored(endpoint: EndpointRoute, shadow: ShadowRoute, key: str) -> bool:
    """Whether Envoy mirrors requests with `key` to `shadow` (keyed: always or never)."""
    if shadow.target is None:
        return False
    threshold = bucketing.threshold(shadow.spec.sample_rate)
    return bucketing.sample_bucket(endpoint.salt, shadow.spec.name, key) < threshold


class Router:
    """Holds the current routing table; `swap` replaces it atomically."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table

    def swap(self, table: RoutingTable) -> None:
        self.table = table

    def explain(self, endpoint_name: str, key: str) -> Explanation:
        """What Envoy does with `key` on an endpoint, and a sentence saying why."""
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
                0,
                None,
                [],
                "no key: the request gets a random variant, with probability equal to each "
                "variant's share of the weights",
            )
        u = bucketing.bucket(endpoint.salt, key)
        variant = endpoint.pick(u)
        # Envoy mirrors to the first MAX_SHADOWS shadows of an endpoint (xds).
        shadows = [
            s.spec.name for s in endpoint.shadows[:MAX_SHADOWS] if mirrored(endpoint, s, key)
        ]
        spec = variant.spec
        text = (
            f"key {key!r} hashes to bucket {u} of {bucketing.TOTAL}, in "
            f"[{variant.range.lower}, {variant.range.upper}) of variant {spec.name!r} "
            f"(models/{spec.model} {spec.selector.describe()}"
        )
        served = variant.target.version if variant.target is not None else 0
        if not variant.version:
            text += ", unresolved)"
        elif served != variant.version:
            text += f" = version {variant.version}, version {served} serves until it is ready)"
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
        return Explanation(endpoint, key, u, variant, shadows, text)
