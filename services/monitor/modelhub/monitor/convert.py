"""Protocol buffers ↔ monitor domain objects. The only monitor module besides `api` and
`registry_client` that knows the wire types."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.common.v1 import types_pb2
from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.common.errors import FieldViolation
from modelhub.common.timestamps import timestamp_of
from modelhub.monitor.alerts import Alert, AlertEvent, AlertState
from modelhub.monitor.audit import AuditEntry, AuditIngestResult
from modelhub.monitor.drift import (
    DriftConfig,
    DriftReport,
    FeatureDrift,
    PartialThresholds,
    Thresholds,
)
from modelhub.monitor.events import Event, Outcome, ShadowResult, Value
from modelhub.monitor.experiments import ExperimentReport
from modelhub.monitor.monitor import IngestResult, OutcomeResult
from modelhub.monitor.profile import (
    CATEGORICAL,
    NUMERIC,
    Baseline,
    DataProfile,
    FeatureProfile,
    FeatureSample,
)
from modelhub.monitor.rules import UPDATABLE_FIELDS, AlertRule, Comparator
from modelhub.monitor.series import SeriesKey
from modelhub.monitor.shadows import ShadowSummary
from modelhub.monitor.stats import LatencySummary, WindowStats
from modelhub.monitor.timeseries import Point, TimeSeries

_KIND_TO_PROTO = {
    NUMERIC: types_pb2.FeatureProfile.NUMERIC,
    CATEGORICAL: types_pb2.FeatureProfile.CATEGORICAL,
}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}
_COMPARATOR_TO_PROTO = {
    Comparator.GREATER_THAN: pb.AlertRule.GREATER_THAN,
    Comparator.GREATER_OR_EQUAL: pb.AlertRule.GREATER_OR_EQUAL,
    Comparator.LESS_THAN: pb.AlertRule.LESS_THAN,
    Comparator.LESS_OR_EQUAL: pb.AlertRule.LESS_OR_EQUAL,
}
_COMPARATOR_FROM_PROTO = {v: k for k, v in _COMPARATOR_TO_PROTO.items()}
_STATE_TO_PROTO = {
    AlertState.INACTIVE: pb.ALERT_STATE_UNSPECIFIED,
    AlertState.PENDING: pb.PENDING,
    AlertState.FIRING: pb.FIRING,
    AlertState.RESOLVED: pb.RESOLVED,
}

# ------------------------------------------------------------------- basics


def to_epoch(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


# ------------------------------------------------------------------ events


def _values(
    values: Sequence[pb.FeatureValue], path: str, out: list[FieldViolation]
) -> list[tuple[str, Value]]:
    result: list[tuple[str, Value]] = []
    append = result.append
    for i, value in enumerate(values):
        which = value.WhichOneof("value")
        if which == "number":
            append((value.name, value.number))
        elif which == "category":
            append((value.name, value.category))
        else:
            out.append(FieldViolation(f"{path}[{i}]", "set exactly one of number and category"))
    return result


def _event(message: pb.InferenceEvent, problems: list[FieldViolation]) -> Event:
    # Runs for every event the monitor ingests: each field is read once, positionally into
    # the event, and the repeated fields (empty on most events) only when set. An unset
    # `time` reads as the zero timestamp, i.e. 0.0 ("when received").
    time = message.time
    features = message.features
    predictions = message.predictions
    shadows = message.shadows
    outputs = message.outputs
    return Event(
        message.model,
        message.version,
        message.latency_seconds,
        time.seconds + time.nanos / 1e9,
        message.request_id,
        message.endpoint,
        message.variant,
        message.queue_seconds,
        message.compute_seconds,
        message.status_code,
        message.key_hash,
        message.rows,
        _values(features, "features", problems) if features else (),
        _values(predictions, "predictions", problems) if predictions else (),
        [
            ShadowResult(
                shadow=s.shadow,
                model=s.model,
                version=s.version,
                status_code=s.status_code,
                latency_s=s.latency_seconds,
                max_abs_diff=s.max_abs_diff,
                argmax_agree=s.argmax_agree,
                has_argmax=s.has_argmax,
            )
            for s in shadows
        ]
        if shadows
        else (),
        message.source or "unknown",
        message.shadow,
        message.mirrored,
        list(outputs) if outputs else (),
        tuple(message.mirrored_to[:8]) if message.mirrored_to else (),
    )


def event_from_proto(message: pb.InferenceEvent) -> tuple[Event, list[FieldViolation]]:
    """The domain event, and the problems only the wire form shows (values without a
    number or category). Fields this schema does not know (a newer sender's) are ignored."""
    problems: list[FieldViolation] = []
    return _event(message, problems), problems


def events_from_proto(
    request: pb.IngestEventsRequest,
) -> tuple[list[Event], dict[int, list[FieldViolation]]]:
    """The batch's events, and the wire-level problems of each (by index). Fields this
    schema does not know are ignored: a newer sender's events are read by their known
    fields, which are validated as usual."""
    events: list[Event] = []
    append = events.append
    problems: dict[int, list[FieldViolation]] = {}
    found: list[FieldViolation] = []  # reused until an event has problems
    for i, message in enumerate(request.events):
        append(_event(message, found))
        if found:
            problems[i] = found
            found = []
    return events, problems


def ingest_response(result: IngestResult) -> pb.IngestEventsResponse:
    return pb.IngestEventsResponse(
        accepted=result.accepted,
        rejected=result.rejected,
        reject_reasons=result.reject_reasons,
        dropped=result.dropped,
        drop_reasons=result.drop_reasons,
    )


def outcomes_from_proto(request: pb.RecordOutcomesRequest) -> list[Outcome]:
    return [
        Outcome(
            request_id=o.request_id,
            value=o.value,
            kind=o.kind or "conversion",
            time=to_epoch(o.time) if o.HasField("time") else 0.0,
        )
        for o in request.outcomes
    ]


def outcomes_response(result: OutcomeResult) -> pb.RecordOutcomesResponse:
    return pb.RecordOutcomesResponse(
        attributed=result.attributed,
        unattributed=result.unattributed,
        duplicates=result.duplicates,
    )


# ------------------------------------------------------------------- stats


def series_key_from_proto(key: pb.SeriesKey) -> SeriesKey:
    return SeriesKey(key.model, key.version, key.endpoint, key.variant, key.source)


def series_key_to_proto(key: SeriesKey) -> pb.SeriesKey:
    return pb.SeriesKey(
        model=key.model,
        version=key.version,
        endpoint=key.endpoint,
        variant=key.variant,
        source=key.source,
    )


def latency_to_proto(summary: LatencySummary) -> pb.LatencySummary:
    return pb.LatencySummary(
        p50=summary.p50,
        p90=summary.p90,
        p95=summary.p95,
        p99=summary.p99,
        mean=summary.mean,
        max=summary.max,
        relative_accuracy=summary.relative_accuracy,
        count=summary.count,
    )


def stats_to_proto(key: SeriesKey, stats: WindowStats) -> pb.Stats:
    return pb.Stats(
        key=series_key_to_proto(key),
        window_seconds=stats.window_s,
        requests=stats.requests,
        errors=stats.errors,
        request_rate=stats.request_rate,
        error_rate=stats.error_rate,
        status_codes=stats.codes,
        latency=latency_to_proto(LatencySummary.of(stats.latency)),
        predictions=stats.predictions,
        outcomes=stats.outcomes,
        outcome_rate=stats.outcome_rate,
        conversions=stats.conversions,
        outcome_mean=stats.outcome_mean,
        queue_seconds_mean=stats.queue_mean,
        compute_seconds_mean=stats.compute_mean,
    )


# ---------------------------------------------------------- profiles, drift


def feature_profile_from_proto(message: types_pb2.FeatureProfile) -> FeatureProfile:
    return FeatureProfile(
        name=message.name,
        kind=_KIND_FROM_PROTO.get(message.kind, ""),
        bin_edges=list(message.bin_edges),
        counts=list(message.counts),
        categories=list(message.categories),
        quantiles=list(message.quantiles),
        count=message.count,
        mean=message.mean,
        stddev=message.stddev,
        min=message.min,
        max=message.max,
    )


def feature_profile_to_proto(profile: FeatureProfile) -> types_pb2.FeatureProfile:
    return types_pb2.FeatureProfile(
        name=profile.name,
        kind=_KIND_TO_PROTO.get(profile.kind, types_pb2.FeatureProfile.KIND_UNSPECIFIED),
        bin_edges=profile.bin_edges,
        counts=profile.counts,
        categories=profile.categories,
        quantiles=profile.quantiles,
        count=profile.count,
        mean=profile.mean,
        stddev=profile.stddev,
        min=profile.min,
        max=profile.max,
    )


def profile_from_proto(message: types_pb2.DataProfile) -> DataProfile:
    return DataProfile(
        features=[feature_profile_from_proto(f) for f in message.features],
        predictions=[feature_profile_from_proto(f) for f in message.predictions],
    )


def profile_to_proto(profile: DataProfile) -> types_pb2.DataProfile:
    return types_pb2.DataProfile(
        features=[feature_profile_to_proto(f) for f in profile.features],
        predictions=[feature_profile_to_proto(f) for f in profile.predictions],
    )


def samples_from_proto(
    samples: Sequence[pb.FeatureSample],
) -> list[FeatureSample]:
    return [FeatureSample(s.name, list(s.numbers), list(s.categories)) for s in samples]


def baseline_to_proto(baseline: Baseline) -> pb.Baseline:
    return pb.Baseline(
        model=baseline.model,
        version=baseline.version,
        profile=profile_to_proto(baseline.profile),
        origin=baseline.origin,
        update_time=timestamp_of(baseline.update_time),
    )


def thresholds_from_proto(message: pb.DriftThresholds) -> PartialThresholds:
    return PartialThresholds(
        psi=message.psi,
        js=message.js,
        ks=message.ks,
        min_samples=message.min_samples,
        p_value=message.p_value,
    )


def thresholds_to_proto(t: Thresholds | PartialThresholds) -> pb.DriftThresholds:
    return pb.DriftThresholds(
        psi=t.psi, js=t.js, ks=t.ks, min_samples=t.min_samples, p_value=t.p_value
    )


def drift_config_from_proto(message: pb.DriftConfig) -> DriftConfig:
    return DriftConfig(message.model, thresholds_from_proto(message.thresholds))


def drift_config_to_proto(config: DriftConfig) -> pb.DriftConfig:
    return pb.DriftConfig(
        model=config.model,
        thresholds=thresholds_to_proto(config.thresholds),
        update_time=timestamp_of(config.update_time),
    )


def _feature_drift_to_proto(drift: FeatureDrift) -> pb.FeatureDrift:
    return pb.FeatureDrift(
        name=drift.name,
        kind=_KIND_TO_PROTO.get(drift.kind, types_pb2.FeatureProfile.KIND_UNSPECIFIED),
        psi=drift.psi,
        js_distance=drift.js_distance,
        ks_statistic=drift.ks_statistic,
        ks_p_value=drift.ks_p_value,
        drifted=drift.drifted,
        insufficient_data=drift.insufficient_data,
        live_count=drift.live_count,
        bin_edges=drift.bin_edges,
        categories=drift.categories,
        baseline_counts=drift.baseline_counts,
        live_counts=drift.live_counts,
        new_categories=drift.new_categories,
        chi2_p_value=drift.chi2_p_value,
        reasons=drift.reasons,
    )


def drift_report_to_proto(report: DriftReport) -> pb.DriftReport:
    return pb.DriftReport(
        model=report.model,
        version=report.version,
        window_seconds=report.window_s,
        thresholds=thresholds_to_proto(report.thresholds),
        features=[_feature_drift_to_proto(f) for f in report.features],
        predictions=[_feature_drift_to_proto(f) for f in report.predictions],
        drifted=report.drifted,
        insufficient_data=report.insufficient_data,
        time=timestamp_of(report.time),
        baseline_origin=report.baseline_origin,
    )


# ------------------------------------------------------------------- rules


def rule_from_proto(message: pb.AlertRule) -> AlertRule:
    """The domain rule (name and output-only fields are the caller's business)."""
    return AlertRule(
        rule_id="",
        display_name=message.display_name,
        metric=message.metric,
        series=series_key_from_proto(message.series),
        comparator=_COMPARATOR_FROM_PROTO.get(message.comparator),
        threshold=message.threshold,
        window_s=message.window_seconds,
        for_s=message.for_seconds,
        webhook_url=message.webhook_url,
        disabled=message.disabled,
        etag=message.etag,
    )


def rule_to_proto(rule: AlertRule) -> pb.AlertRule:
    comparator = (
        _COMPARATOR_TO_PROTO[rule.comparator]
        if rule.comparator is not None
        else pb.AlertRule.COMPARATOR_UNSPECIFIED
    )
    return pb.AlertRule(
        name=rule.name,
        display_name=rule.display_name,
        metric=rule.metric,
        series=series_key_to_proto(rule.series),
        comparator=comparator,
        threshold=rule.threshold,
        window_seconds=rule.window_s,
        for_seconds=rule.for_s,
        webhook_url=rule.webhook_url,
        disabled=rule.disabled,
        create_time=timestamp_of(rule.create_time),
        update_time=timestamp_of(rule.update_time),
        etag=rule.etag,
    )


def update_paths(request: pb.UpdateAlertRuleRequest) -> list[str]:
    """The fields to update: the mask's paths, or every populated updatable field."""
    if request.HasField("update_mask") and request.update_mask.paths:
        return list(request.update_mask.paths)
    populated = {descriptor.name for descriptor, _ in request.rule.ListFields()}
    return [name for name in UPDATABLE_FIELDS if name in populated]


def alert_to_proto(alert: Alert) -> pb.Alert:
    return pb.Alert(
        rule=alert.rule,
        state=_STATE_TO_PROTO[alert.state],
        value=alert.value,
        active_since=timestamp_of(alert.active_since),
        last_transition_time=timestamp_of(alert.last_transition),
        display_name=alert.display_name,
        metric=alert.metric,
        threshold=alert.threshold,
    )


def alert_event_to_proto(event: AlertEvent) -> pb.AlertEvent:
    return pb.AlertEvent(
        alert=alert_to_proto(event.alert),
        previous_state=_STATE_TO_PROTO[event.previous],
        initial=event.initial,
    )


# ------------------------------------------------------ experiments, shadows


def experiment_report_to_proto(report: ExperimentReport) -> pb.ExperimentReport:
    return pb.ExperimentReport(
        endpoint=report.endpoint,
        window_seconds=report.window_s,
        alpha=report.alpha,
        variants=[
            pb.VariantReport(
                variant=v.variant,
                model=v.model,
                version=v.version,
                requests=v.requests,
                errors=v.errors,
                error_rate=v.error_rate,
                latency=latency_to_proto(v.latency),
                outcomes=v.outcomes,
                outcome_rate=v.outcome_rate,
                outcome_rate_ci=pb.ProportionInterval(
                    lower=v.outcome_rate_ci[0], upper=v.outcome_rate_ci[1]
                ),
                conversions=v.conversions,
                outcome_mean=v.outcome_mean,
            )
            for v in report.variants
        ],
        comparisons=[
            pb.VariantComparison(
                variant_a=c.variant_a,
                variant_b=c.variant_b,
                difference=c.difference,
                z_score=c.z_score,
                p_value=c.p_value,
                significant=c.significant,
            )
            for c in report.comparisons
        ],
    )


def shadow_report_to_proto(
    endpoint: str, window_s: int, shadows: Sequence[ShadowSummary]
) -> pb.ShadowReport:
    return pb.ShadowReport(
        endpoint=endpoint,
        window_seconds=window_s,
        shadows=[
            pb.ShadowSummary(
                shadow=s.shadow,
                model=s.model,
                version=s.version,
                compared=s.compared,
                failed=s.failed,
                agreement_rate=s.agreement_rate,
                max_abs_diff_p50=s.max_abs_diff_p50,
                max_abs_diff_p99=s.max_abs_diff_p99,
                max_abs_diff_max=s.max_abs_diff_max,
                shadow_latency=latency_to_proto(s.shadow_latency),
                primary_latency=latency_to_proto(s.primary_latency),
                argmax_compared=s.argmax_compared,
                latency_delta_mean=s.latency_delta_mean,
            )
            for s in shadows
        ],
    )


# ------------------------------------------------------------------ time series


def _point_to_proto(point: Point) -> pb.TimeSeriesPoint:
    message = pb.TimeSeriesPoint(
        time=timestamp_of(point.time),
        requests=point.requests,
        errors=point.errors,
        requests_per_second=point.requests_per_second,
        errors_per_second=point.errors_per_second,
    )
    if point.p50_s is not None and point.p99_s is not None:
        message.p50_ms = point.p50_s * 1000.0
        message.p99_ms = point.p99_s * 1000.0
    return message


def timeseries_to_proto(series: TimeSeries) -> pb.TimeSeries:
    return pb.TimeSeries(
        series=[
            pb.Series(
                variant=line.variant,
                model=line.model,
                version=str(line.version) if line.version else "",
                points=[_point_to_proto(p) for p in line.points],
            )
            for line in series.series
        ],
        step_seconds=series.step_s,
        start_time=timestamp_of(series.start),
        end_time=timestamp_of(series.end),
    )


# ------------------------------------------------------------------- audit log


def audit_entries_from_proto(
    request: pb.IngestAuditRecordsRequest,
) -> tuple[list[AuditEntry], dict[int, list[FieldViolation]]]:
    """The records of a batch as entries (each serialized whole as its payload, for its
    tensors), and the problems only the wire form shows, by record index (none today:
    fields this schema does not know are ignored, and kept in the stored payload)."""
    entries: list[AuditEntry] = []
    problems: dict[int, list[FieldViolation]] = {}
    for record in request.records:
        entries.append(
            AuditEntry(
                request_id=record.request_id,
                time=to_epoch(record.time) if record.HasField("time") else 0.0,
                endpoint=record.endpoint,
                variant=record.variant,
                model=record.model,
                version=record.version,
                status_code=record.status_code,
                status_message=record.status_message,
                latency_s=record.latency_seconds,
                trace_id=record.trace_id,
                caller=record.caller,
                caller_role=record.caller_role,
                truncated=record.truncated,
                # The whole record (no copy of its tensors); reads take the tensors from it
                # and every other field from the checked columns.
                payload=record.SerializeToString(),
            )
        )
    return entries, problems


def audit_ingest_response(result: AuditIngestResult) -> pb.IngestAuditRecordsResponse:
    return pb.IngestAuditRecordsResponse(
        accepted=result.accepted, rejected=result.rejected, reject_reasons=result.reasons
    )


def audit_record_to_proto(entry: AuditEntry, payloads: bool) -> pb.AuditRecord:
    """A stored record; with `payloads`, its inputs and outputs (decoded from the stored
    payload in place, no copy of the tensors)."""
    record = pb.AuditRecord.FromString(entry.payload) if payloads else pb.AuditRecord()
    record.request_id = entry.request_id
    record.time.CopyFrom(timestamp_of(entry.time))
    record.trace_id = entry.trace_id
    record.caller = entry.caller
    record.caller_role = entry.caller_role
    record.endpoint = entry.endpoint
    record.variant = entry.variant
    record.model = entry.model
    record.version = entry.version
    record.status_code = entry.status_code
    record.status_message = entry.status_message
    record.latency_seconds = entry.latency_s
    record.truncated = entry.truncated
    record.size_bytes = entry.size_bytes
    return record


def optional_time(message: Message, field: str) -> float | None:
    """Epoch seconds of an optional Timestamp field, None when unset."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return to_epoch(value)
