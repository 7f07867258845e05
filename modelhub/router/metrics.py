"""Prometheus exposition of the router's counters.

The data path counts with plain integer increments (see `stats`); this collector reads
those counters when Prometheus scrapes, so metrics cost the requests nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelhub.router.backends import BackendRegistry
from modelhub.router.events import EventPipeline
from modelhub.router.stats import RouterCounters


class RouterCollector(Collector):
    def __init__(
        self,
        counters: RouterCounters,
        backends: BackendRegistry,
        events: EventPipeline | None,
        revision: Callable[[], int],
    ) -> None:
        self._counters = counters
        self._backends = backends
        self._events = events
        self._revision = revision

    def collect(self) -> Iterator[Metric]:
        labels = ["endpoint", "variant", "model"]
        requests = CounterMetricFamily(
            "modelhub_router_requests", "Requests routed, by endpoint and variant.", labels=labels
        )
        errors = CounterMetricFamily(
            "modelhub_router_errors", "Routed requests that did not end OK.", labels=labels
        )
        unkeyed = CounterMetricFamily(
            "modelhub_router_unkeyed",
            "Requests without a sticky key (random variant).",
            labels=labels,
        )
        fallbacks = CounterMetricFamily(
            "modelhub_router_fallbacks",
            "Requests a variant failed with UNAVAILABLE that the fallback served.",
            labels=labels,
        )
        for c in self._counters.routes():
            values = [c.endpoint, c.variant, c.model]
            requests.add_metric(values, c.requests)
            errors.add_metric(values, c.errors)
            unkeyed.add_metric(values, c.unkeyed)
            fallbacks.add_metric(values, c.fallbacks)
        yield from (requests, errors, unkeyed, fallbacks)

        mirrors = CounterMetricFamily(
            "modelhub_router_shadow_mirrors",
            "Shadow mirrors by result (sent, dropped, failed, compared, mismatched).",
            labels=["endpoint", "shadow", "result"],
        )
        for s in self._counters.shadows():
            for result in ("sent", "dropped", "failed", "compared", "mismatched"):
                mirrors.add_metric([s.endpoint, s.shadow, result], getattr(s, result))
        yield mirrors

        healthy = GaugeMetricFamily(
            "modelhub_router_backend_healthy",
            "1 when the backend gets traffic.",
            labels=["backend"],
        )
        in_flight = GaugeMetricFamily(
            "modelhub_router_backend_in_flight", "Calls in flight.", labels=["backend"]
        )
        calls = CounterMetricFamily(
            "modelhub_router_backend_calls", "Calls forwarded to the backend.", labels=["backend"]
        )
        failures = CounterMetricFamily(
            "modelhub_router_backend_failures",
            "Calls that failed at the transport level.",
            labels=["backend"],
        )
        for b in self._backends.backends():
            healthy.add_metric([b.address], 1 if b.healthy else 0)
            in_flight.add_metric([b.address], b.in_flight)
            calls.add_metric([b.address], b.requests)
            failures.add_metric([b.address], b.failures)
        yield from (healthy, in_flight, calls, failures)

        if self._events is not None:
            events = CounterMetricFamily(
                "modelhub_router_monitor_events",
                "Events for the monitor by result.",
                labels=["result"],
            )
            events.add_metric(["sent"], self._events.sent)
            events.add_metric(["dropped"], self._events.dropped)
            yield events
        revision = GaugeMetricFamily(
            "modelhub_router_registry_revision", "Registry revision of the routing table."
        )
        revision.add_metric([], self._revision())
        yield revision


def register(
    registry: CollectorRegistry,
    counters: RouterCounters,
    backends: BackendRegistry,
    events: EventPipeline | None,
    revision: Callable[[], int],
) -> None:
    registry.register(RouterCollector(counters, backends, events, revision))
