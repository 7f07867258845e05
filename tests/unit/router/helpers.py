"""Builders for router unit tests: registry states and routing tables, without network."""

from __future__ import annotations

from modelhub.router.table import (
    Chooser,
    DeploymentSpec,
    EndpointSpec,
    KeySource,
    RegistryState,
    RoutingTable,
    Selector,
    ShadowSpec,
    StickyKey,
    VariantSpec,
    build_table,
)


def state(*endpoints: EndpointSpec, versions: dict[str, list[int]] | None = None) -> RegistryState:
    """A registry state with READY versions per model (default: m has 1, 2, 3)."""
    result = RegistryState(revision=10)
    for model, numbers in (versions or {"m": [1, 2, 3]}).items():
        result.put_model(model)
        for number in numbers:
            result.put_version(model, number, True)
    for spec in endpoints:
        result.put_endpoint(spec)
    return result


BY_USER = StickyKey(KeySource.METADATA, "x-user-id")
SALT = "salt-1"


def endpoint(
    weights: tuple[float, ...] = (50, 50),
    *,
    versions: tuple[int, ...] | None = None,
    key: StickyKey | None = BY_USER,
    shadows: tuple[ShadowSpec, ...] = (),
    fallback: str = "",
    pools: tuple[tuple[str, ...], ...] | None = None,
    name: str = "e",
    salt: str = SALT,
) -> EndpointSpec:
    """Variants v0, v1, … of model m with the given weights, version i+1 each."""
    numbers = versions or tuple(range(1, len(weights) + 1))
    return EndpointSpec(
        id=name,
        variants=tuple(
            VariantSpec(f"v{i}", "m", Selector(version=numbers[i]), w, pools[i] if pools else ())
            for i, w in enumerate(weights)
        ),
        sticky_key=key,
        salt=salt,
        shadows=shadows,
        fallback=fallback,
    )


def table(
    registry_state: RegistryState,
    default_alias: str = "champion",
    choose: Chooser | None = None,
) -> RoutingTable:
    if choose is None:
        return build_table(registry_state, default_alias)
    return build_table(registry_state, default_alias, choose=choose)


# A pool of their own for variants and shadows (host:port addresses).
GPU_POOL = ("gpu-1:9000", "gpu-2:9000")
CANARY_POOL = ("canary-1:9000",)
SHADOW_POOL = ("shadow-1:9100",)
DEFAULT_POOL = ("inference-1:50052", "inference-2:50052")


def representative_state() -> RegistryState:
    """Every shape of endpoint the router writes for Envoy:

    * `checkout`: sticky by the `x-user-id` header; `stable` (champion alias, default pool,
      weight 90) and `canary` (version 3, its own pool, weight 10); fallback `stable`; a
      shadow `next` (ranker, newest READY) sampled at 0.1 on its own pool, a shadow that
      resolves to nothing, and a shadow at rate 0.
    * `search`: sticky by the request parameter `user`; `a` (version 1, weight 50), `gone`
      (version 99: unresolved, no fallback, weight 30) and `b` (version 2 on the GPU pool,
      weight 20).
    * `open`: no sticky key, one variant.
    * `rescued`: an unresolved variant whose fallback serves in its place.
    """
    result = RegistryState(revision=42)
    for model, numbers in {"fraud": [1, 2, 3], "ranker": [4, 5]}.items():
        result.put_model(model)
        for number in numbers:
            result.put_version(model, number, True)
    result.put_version("fraud", 6, False)  # not READY: never routed to
    result.put_alias("fraud", "champion", 2)
    result.put_endpoint(
        EndpointSpec(
            id="checkout",
            variants=(
                VariantSpec("stable", "fraud", Selector(alias="champion"), 90),
                VariantSpec("canary", "fraud", Selector(version=3), 10, CANARY_POOL),
            ),
            sticky_key=StickyKey(KeySource.METADATA, "x-user-id"),
            salt="checkout-salt",
            shadows=(
                ShadowSpec("next", "ranker", Selector(), 0.1, SHADOW_POOL),
                ShadowSpec("ghost", "ranker", Selector(version=77), 0.5),
                ShadowSpec("off", "ranker", Selector(version=4), 0.0),
            ),
            fallback="stable",
        )
    )
    result.put_endpoint(
        EndpointSpec(
            id="search",
            variants=(
                VariantSpec("a", "fraud", Selector(version=1), 50),
                VariantSpec("gone", "fraud", Selector(version=99), 30),
                VariantSpec("b", "fraud", Selector(version=2), 20, GPU_POOL),
            ),
            sticky_key=StickyKey(KeySource.PARAMETER, "user"),
            salt="search-salt",
        )
    )
    result.put_endpoint(
        EndpointSpec(id="open", variants=(VariantSpec("only", "ranker", Selector(), 1),))
    )
    result.put_endpoint(
        EndpointSpec(
            id="rescued",
            variants=(
                VariantSpec("main", "fraud", Selector(version=1), 70),
                VariantSpec("missing", "fraud", Selector(alias="nowhere"), 30),
            ),
            sticky_key=StickyKey(KeySource.METADATA, "x-user-id"),
            salt="rescued-salt",
            fallback="main",
        )
    )
    result.put_deployment(DeploymentSpec("fraud-serving", "fraud", (Selector(alias="champion"),)))
    return result
