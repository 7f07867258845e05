"""Routing counters. Plain integers on objects the routing table points at, so the data
path counts with an attribute increment instead of a labelled-metric lookup; Prometheus
and `GetRouterStats` read them when asked. Counters outlive routing-table rebuilds: a
policy change does not reset them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RouteCounters:
    """Requests of one (endpoint, variant), or of one plain model (endpoint empty)."""

    endpoint: str
    variant: str
    model: str
    requests: int = 0
    errors: int = 0
    unkeyed: int = 0
    fallbacks: int = 0
    retries: int = 0


@dataclass(slots=True)
class ShadowCounters:
    """Mirrors of one (endpoint, shadow)."""

    endpoint: str
    shadow: str
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    compared: int = 0
    mismatched: int = 0


class RouterCounters:
    """Every counter of one router, keyed so that rebuilt tables find their old ones."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str, str], RouteCounters] = {}
        self._shadows: dict[tuple[str, str], ShadowCounters] = {}
        self.not_found = 0
        self.outcomes_attributed = 0
        self.outcomes_unattributed = 0

    def route(self, endpoint: str, variant: str, model: str = "") -> RouteCounters:
        """Counters of an endpoint's variant (model empty) or of a plain model."""
        key = (endpoint, variant, model)
        counters = self._routes.get(key)
        if counters is None:
            counters = self._routes[key] = RouteCounters(endpoint, variant, model)
        return counters

    def shadow(self, endpoint: str, shadow: str) -> ShadowCounters:
        key = (endpoint, shadow)
        counters = self._shadows.get(key)
        if counters is None:
            counters = self._shadows[key] = ShadowCounters(endpoint, shadow)
        return counters

    def routes(self) -> list[RouteCounters]:
        return sorted(self._routes.values(), key=lambda c: (c.endpoint, c.variant, c.model))

    def shadows(self) -> list[ShadowCounters]:
        return sorted(self._shadows.values(), key=lambda c: (c.endpoint, c.shadow))
