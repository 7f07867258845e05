"""Prometheus exposition reads the router's counters at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from modelhub.router import metrics
from modelhub.router.stats import RouterCounters
from tests.unit.router.helpers import backend_registry


def test_counters_are_exposed() -> None:
    counters = RouterCounters()
    backends = backend_registry(("a:1",))
    registry = CollectorRegistry()
    metrics.register(registry, counters, backends, None, lambda: 42)
    route = counters.route("endpoints/e", "b")
    route.requests, route.fallbacks = 7, 2
    counters.shadow("endpoints/e", "s").dropped = 3
    backends.backend("a:1").mark_down("test")
    labels = {"endpoint": "endpoints/e", "variant": "b", "model": ""}
    assert registry.get_sample_value("modelhub_router_requests_total", labels) == 7
    assert registry.get_sample_value("modelhub_router_fallbacks_total", labels) == 2
    assert (
        registry.get_sample_value(
            "modelhub_router_shadow_mirrors_total",
            {"endpoint": "endpoints/e", "shadow": "s", "result": "dropped"},
        )
        == 3
    )
    assert registry.get_sample_value("modelhub_router_backend_healthy", {"backend": "a:1"}) == 0
    assert registry.get_sample_value("modelhub_router_registry_revision") == 42
