"""Prometheus exposition of the monitor's figures, registered in the runtime's own
`CollectorRegistry`.

Per series (labels model, version, endpoint, variant, source) the collector exposes
cumulative counters and a request-duration *histogram*: Prometheus computes windows with
`rate()` and, unlike summaries, histograms from several replicas add up
(`histogram_quantile(0.99, sum by (le, model) (rate(..._bucket[5m])))`). It also exposes
ingestion counters, alert counts and the latest drift scores.

Scrapes run in the HTTP server's thread while the event loop mutates the state, so the
collector copies every container before walking it (a C-level copy holds the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelhub.monitor.audit import AuditLog
from modelhub.monitor.events import status_name
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.series import LATENCY_BUCKETS_S, SeriesKey
from modelhub.monitor.webhook import WebhookNotifier

SERIES_LABELS = ("model", "version", "endpoint", "variant", "source")
_BOUNDS = [floatToGoString(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]


def _labels(key: SeriesKey) -> list[str]:
    return [key.model, str(key.version), key.endpoint, key.variant, key.source]


class MonitorCollector(Collector):
    """Reads a `Monitor` at scrape time."""

    def __init__(self, monitor: Monitor, webhooks: WebhookNotifier | None = None) -> None:
        self._monitor = monitor
        self._webhooks = webhooks

    def collect(self) -> Iterator[Metric]:
        yield from self._series_metrics()
        yield from self._ingest_metrics()
        yield from self._alert_metrics()
        yield from self._drift_metrics()

    def _series_metrics(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "modelhub_monitor_request_duration_seconds",
            "End-to-end latency of served requests, as reported to the monitor.",
            labels=SERIES_LABELS,
        )
        requests = CounterMetricFamily(
            "modelhub_monitor_requests",
            "Served requests reported to the monitor, by gRPC status code.",
            labels=(*SERIES_LABELS, "code"),
        )
        outcomes = CounterMetricFamily(
            "modelhub_monitor_outcomes",
            "Outcomes attributed to served requests.",
            labels=SERIES_LABELS,
        )
        conversions = CounterMetricFamily(
            "modelhub_monitor_conversions",
            "Attributed outcomes with a positive value.",
            labels=SERIES_LABELS,
        )
        for series in self._monitor.series:
            labels = _labels(series.key)
            cumulative = series.cumulative
            counts = list(cumulative.buckets)
            running, buckets = 0, []
            for bound, count in zip(_BOUNDS, counts, strict=True):
                running += count
                buckets.append((bound, float(running)))
            duration.add_metric(labels, buckets, sum_value=cumulative.latency_sum)
            for code, n in sorted(dict(cumulative.codes).items()):
                requests.add_metric([*labels, status_name(code)], float(n))
            outcomes.add_metric(labels, float(cumulative.outcomes))
            conversions.add_metric(labels, float(cumulative.conversions))
        yield from (duration, requests, outcomes, conversions)

    def _ingest_metrics(self) -> Iterator[Metric]:
        counters = self._monitor.counters
        events = CounterMetricFamily(
            "modelhub_monitor_events",
            "Events received: accepted, rejected (invalid, by field) or dropped (by reason).",
            labels=("result", "reason"),
        )
        events.add_metric(["accepted", ""], float(counters.accepted))
        for field, n in sorted(dict(counters.rejected).items()):
            events.add_metric(["rejected", field], float(n))
        for reason, n in sorted(dict(counters.dropped).items()):
            events.add_metric(["dropped", reason], float(n))
        yield events
        outcomes = CounterMetricFamily(
            "modelhub_monitor_outcome_reports",
            "Outcomes received, by attribution result.",
            labels=("result",),
        )
        for result, n in sorted(dict(counters.outcomes).items()):
            outcomes.add_metric([result], float(n))
        yield outcomes
        yield CounterMetricFamily(
            "modelhub_monitor_history_refused",
            "Events of series left out of live time series (QueryTimeSeries): every "
            "history was taken (MODELHUB_MONITOR_MAX_HISTORY_SERIES).",
            value=float(self._monitor.series.histories.refused),
        )
        yield CounterMetricFamily(
            "modelhub_monitor_shadow_comparisons_dropped",
            "Shadow comparisons not kept (shadow series limit reached).",
            value=float(counters.shadows_dropped),
        )
        joins = CounterMetricFamily(
            "modelhub_monitor_shadow_joins",
            "Primary and shadow events joined by request id, by result: joined (a "
            "comparison), mismatched (outputs not comparable), primary_failed, "
            "expired_primary / expired_shadow (the other half never came), evicted (too "
            "many pending).",
            labels=("result",),
        )
        for result, n in self._monitor.joiner.counters.as_dict().items():
            joins.add_metric([result], float(n))
        yield joins
        yield CounterMetricFamily(
            "modelhub_monitor_samples_refused",
            "Feature values not sampled (feature or version limit reached).",
            value=float(self._monitor.samples.refused_values),
        )
        sizes = GaugeMetricFamily(
            "modelhub_monitor_tracked",
            "Entries held in bounded in-memory tables, by table.",
            labels=("table",),
        )
        sizes.add_metric(["series"], float(len(self._monitor.series)))
        sizes.add_metric(["shadow_series"], float(len(self._monitor.shadows)))
        sizes.add_metric(["sampled_versions"], float(len(self._monitor.samples)))
        sizes.add_metric(["request_ids"], float(len(self._monitor.requests)))
        sizes.add_metric(["pending_shadow_joins"], float(len(self._monitor.joiner)))
        yield sizes

    def _alert_metrics(self) -> Iterator[Metric]:
        alerts = GaugeMetricFamily("modelhub_monitor_alerts", "Alerts by state.", labels=("state",))
        for state, n in self._monitor.alerts.counts().items():
            alerts.add_metric([state.name.lower()], float(n))
        yield alerts
        yield GaugeMetricFamily(
            "modelhub_monitor_alert_watchers",
            "Open WatchAlerts streams.",
            value=float(self._monitor.alerts.watcher_count),
        )
        yield CounterMetricFamily(
            "modelhub_monitor_alert_evaluation_errors",
            "Rule evaluations that failed (e.g. registry unreachable for a baseline).",
            value=float(self._monitor.alerts.evaluation_errors),
        )
        if self._webhooks is not None:
            hooks = CounterMetricFamily(
                "modelhub_monitor_webhooks", "Webhook posts, by result.", labels=("result",)
            )
            hooks.add_metric(["sent"], float(self._webhooks.sent))
            hooks.add_metric(["failed"], float(self._webhooks.failed))
            hooks.add_metric(["dropped"], float(self._webhooks.dropped))
            yield hooks

    def _drift_metrics(self) -> Iterator[Metric]:
        scores = GaugeMetricFamily(
            "modelhub_monitor_drift_score",
            "Latest drift scores per feature (computed by drift reports and drift rules).",
            labels=("model", "version", "feature", "score"),
        )
        drifted = GaugeMetricFamily(
            "modelhub_monitor_drifted",
            "1 when the feature drifted in the latest report.",
            labels=("model", "version", "feature"),
        )
        for (model, version), report in list(self._monitor.last_drift.items()):
            for group, prefix in ((report.features, ""), (report.predictions, "prediction:")):
                for feature in group:
                    if feature.insufficient_data:
                        continue
                    base = [model, str(version), prefix + feature.name]
                    scores.add_metric([*base, "psi"], feature.psi)
                    scores.add_metric([*base, "js"], feature.js_distance)
                    if feature.kind == "numeric":
                        scores.add_metric([*base, "ks"], feature.ks_statistic)
                    drifted.add_metric(base, 1.0 if feature.drifted else 0.0)
        yield scores
        yield drifted


def register(
    registry: CollectorRegistry, monitor: Monitor, webhooks: WebhookNotifier | None = None
) -> MonitorCollector:
    """Expose `monitor` through `registry`; returns the collector."""
    collector = MonitorCollector(monitor, webhooks)
    registry.register(collector)
    return collector


class AuditCollector(Collector):
    """The payload audit log's counters, read at scrape time."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def collect(self) -> Iterator[Metric]:
        audit = self._audit
        records = CounterMetricFamily(
            "modelhub_monitor_audit_records",
            "Audit records received: stored, or rejected (invalid, too large, too old).",
            labels=("result",),
        )
        records.add_metric(["stored"], float(audit.stored))
        records.add_metric(["rejected"], float(audit.rejected))
        yield records
        deleted = CounterMetricFamily(
            "modelhub_monitor_audit_records_deleted",
            "Audit records deleted by retention, by reason: age, bytes.",
            labels=("reason",),
        )
        for reason, count in dict(audit.deleted).items():
            deleted.add_metric([reason], float(count))
        yield deleted
        yield GaugeMetricFamily(
            "modelhub_monitor_audit_stored_bytes",
            "Bytes the stored audit records take (what retention by bytes bounds).",
            value=float(audit.stored_bytes),
        )


def register_audit(registry: CollectorRegistry, audit: AuditLog) -> AuditCollector:
    collector = AuditCollector(audit)
    registry.register(collector)
    return collector
