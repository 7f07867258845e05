"""Prometheus exposition of the router's counters (read when Prometheus scrapes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelhub.router.xds import ConfigWriter


class RouterCollector(Collector):
    def __init__(self, writer: ConfigWriter, revision: Callable[[], int]) -> None:
        self._writer = writer
        self._revision = revision

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "modelhub_router_revision",
            "Registry revision of the routing table last built.",
            value=float(self._revision()),
        )
        yield CounterMetricFamily(
            "modelhub_router_config_writes",
            "Envoy configuration snapshots written.",
            value=float(self._writer.writes),
        )
        yield CounterMetricFamily(
            "modelhub_router_config_write_errors",
            "Envoy configuration snapshots that could not be written (Envoy keeps the last).",
            value=float(self._writer.errors),
        )
