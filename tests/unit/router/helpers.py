"""Builders for router unit tests: registry states and backend registries without network."""

from __future__ import annotations

from typing import Any

from modelhub.router.backends import BackendRegistry
from modelhub.router.stats import RouterCounters
from modelhub.router.table import (
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


class FakeConnection:
    """Stands for a channel: remembers whether it was closed."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False


async def close_connection(connection: Any) -> None:
    connection.closed = True


def backend_registry(default: tuple[str, ...] = ("inference:1",)) -> BackendRegistry:
    return BackendRegistry(FakeConnection, close_connection, default)


def state(*endpoints: EndpointSpec, versions: dict[str, list[int]] | None = None) -> RegistryState:
    """A registry state with READY versions per model (default: m has 1, 2, 3)."""
    result = RegistryState(revision=10)
    for model, numbers in (versions or {"m": [1, 2, 3]}).items():
        result.put_model(model)
        for number in numbers:
            result.put_version(model, number, True)
    for endpoint in endpoints:
        result.put_endpoint(endpoint)
    return result


BY_USER = StickyKey(KeySource.METADATA, "x-user-id")


def endpoint(
    weights: tuple[float, ...] = (50, 50),
    *,
    versions: tuple[int, ...] | None = None,
    key: StickyKey | None = BY_USER,
    shadows: tuple[ShadowSpec, ...] = (),
    fallback: str = "",
    pools: tuple[tuple[str, ...], ...] | None = None,
    name: str = "e",
) -> EndpointSpec:
    """Variants v0, v1, … of model m with the given weights, version i+1 each."""
    numbers = versions or tuple(range(1, len(weights) + 1))
    return EndpointSpec(
        id=name,
        variants=tuple(
            VariantSpec(
                f"v{i}",
                "m",
                Selector(version=numbers[i]),
                w,
                pools[i] if pools else (),
            )
            for i, w in enumerate(weights)
        ),
        sticky_key=key,
        salt="salt-1",
        shadows=shadows,
        fallback=fallback,
    )


def table(
    registry_state: RegistryState,
    backends: BackendRegistry | None = None,
    counters: RouterCounters | None = None,
    default_alias: str = "champion",
) -> RoutingTable:
    return build_table(
        registry_state,
        backends or backend_registry(),
        counters or RouterCounters(),
        default_alias,
    )
