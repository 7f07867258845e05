"""The monitor's domain façade: ingestion, statistics, drift, alerts, experiments and
shadows, over bounded in-memory state and the configuration store. Transport-neutral:
the gRPC servicer converts messages and calls these methods."""

from __future__ import annotations

import random
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from modelhub.common.errors import (
    ConflictError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
)
from modelhub.monitor import rules as rules_mod
from modelhub.monitor.alerts import AlertManager, Notifier
from modelhub.monitor.clock import Clock, system_clock
from modelhub.monitor.drift import (
    DriftConfig,
    DriftReport,
    PartialThresholds,
    Thresholds,
    drift_report,
)
from modelhub.monitor.events import (
    Event,
    Outcome,
    check_endpoint_name,
    check_model_name,
    event_violations,
    outcome_violations,
    prefixed,
    violations_error,
)
from modelhub.monitor.experiments import ExperimentReport, VariantData, experiment_report
from modelhub.monitor.outcomes import Attribution, RequestIndex
from modelhub.monitor.pairing import ShadowJoiner
from modelhub.monitor.profile import (
    MONITOR_ORIGIN,
    REGISTRY_ORIGIN,
    Baseline,
    DataProfile,
    FeatureSample,
    build_profile,
    validate_profile,
)
from modelhub.monitor.rules import AlertRule
from modelhub.monitor.samples import SampleStore
from modelhub.monitor.series import Series, SeriesKey, SeriesTable
from modelhub.monitor.settings import RETENTION_S, MonitorSettings
from modelhub.monitor.shadows import ShadowSummary, ShadowTable
from modelhub.monitor.stats import Bucket, WindowStats, prediction_label
from modelhub.monitor.store import MonitorStore, decode_page_token, new_etag
from modelhub.monitor.timeseries import Query, TimeSeries, line, point_starts, requests_between
from modelhub.monitor.windows import span_seconds

# Reads a version's data profile from the registry: None when it has none.
BaselineSource = Callable[[str, int], Awaitable[DataProfile | None]]

MAX_REJECT_REASONS = 20
_MAX_CACHED_BASELINES = 256
_INDEX = re.compile(r"\[\d+\]")
# The labels of an event without predictions (never modified).
_NO_LABELS: list[str] = []


@dataclass(slots=True)
class IngestResult:
    """What happened to the events of one or more batches."""

    accepted: int = 0
    rejected: int = 0
    reject_reasons: list[str] = field(default_factory=list)
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        room = MAX_REJECT_REASONS - len(self.reject_reasons)
        self.reject_reasons.extend(other.reject_reasons[: max(room, 0)])
        self.dropped += other.dropped
        for reason, n in other.drop_reasons.items():
            self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + n


@dataclass(slots=True)
class OutcomeResult:
    attributed: int = 0
    unattributed: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class IngestCounters:
    """Totals since start, for Prometheus."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by offending field
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    outcomes: dict[str, int] = field(default_factory=dict)  # by attribution
    shadows_dropped: int = 0


class Monitor:
    """Everything the monitor service does, behind one transport-neutral interface."""

    def __init__(
        self,
        settings: MonitorSettings,
        store: MonitorStore,
        *,
        clock: Clock = system_clock,
        baseline_source: BaselineSource | None = None,
        notifier: Notifier | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._baseline_source = baseline_source
        alpha, bins = settings.sketch_relative_accuracy, settings.sketch_max_bins
        self.series = SeriesTable(settings.max_series, alpha, bins, settings.max_history_series)
        self.samples = SampleStore(
            settings.max_sampled_versions,
            settings.max_features,
            settings.samples_per_bucket,
            rng=rng,
        )
        self.requests = RequestIndex(
            settings.max_tracked_requests, settings.join_window_s, settings.max_clock_skew_s
        )
        self.shadows = ShadowTable(settings.max_shadow_series, alpha, bins)
        self.joiner = ShadowJoiner(settings.max_pending_shadow_joins, settings.shadow_join_window_s)
        self.alerts = AlertManager(
            self.metric_value,
            clock,
            resolved_retention_s=settings.resolved_retention_s,
            max_watchers=settings.max_watchers,
            watcher_queue_size=settings.watcher_queue_size,
            notifier=notifier,
        )
        self.counters = IngestCounters()
        # The series of each (model, version, endpoint, variant, source) seen, without a
        # SeriesKey per event; a subset of `self.series`, cleared when it evicts any.
        self._series_of: dict[tuple[str, int, str, str, str], Series] = {}
        self.defaults = Thresholds(
            psi=settings.drift_psi,
            js=settings.drift_js,
            ks=settings.drift_ks,
            min_samples=settings.drift_min_samples,
            p_value=settings.drift_p_value,
        )
        # The last drift report of each version, for Prometheus.
        self.last_drift: OrderedDict[tuple[str, int], DriftReport] = OrderedDict()

    async def start(self) -> None:
        """Load the stored rules into the evaluator."""
        self.alerts.load(await self.store.list_rules())

    # -------------------------------------------------------------- ingestion

    def ingest(
        self,
        events: Sequence[Event],
        *,
        strict: bool = False,
        decode_violations: Mapping[int, list[FieldViolation]] | None = None,
    ) -> IngestResult:
        """Validate and record a batch. Invalid events are rejected one by one (or, with
        `strict`, the whole batch fails with INVALID_ARGUMENT before anything is kept).
        `decode_violations` are problems the transport found while decoding event i."""
        now = self.clock()
        skew = self.settings.max_clock_skew_s
        decode_violations = decode_violations or {}
        result = IngestResult()
        valid: list[Event] = []
        problems: list[FieldViolation] = []
        fields: list[str] = []
        for i, event in enumerate(events):
            violations = [*decode_violations.get(i, []), *event_violations(event, now, skew)]
            if violations:
                result.rejected += 1
                problems.extend(prefixed(violations, f"events[{i}]"))
                fields.extend(_INDEX.sub("", v.field) for v in violations)
            else:
                valid.append(event)
        if strict and problems:
            raise violations_error(problems, "events batch")
        for name in fields:
            self.counters.rejected[name] = self.counters.rejected.get(name, 0) + 1
        result.reject_reasons = [
            f"{v.field}: {v.description}" for v in problems[:MAX_REJECT_REASONS]
        ]
        for event in valid:
            reason = self._record(event, now)
            if reason is None:
                result.accepted += 1
            else:
                result.dropped += 1
                result.drop_reasons[reason] = result.drop_reasons.get(reason, 0) + 1
                self.counters.dropped[reason] = self.counters.dropped.get(reason, 0) + 1
        self.counters.accepted += result.accepted
        return result

    def _record(self, event: Event, now: float) -> str | None:
        """Record one valid event; the reason it was dropped, or None when kept."""
        t = event.time or now
        if t < now - RETENTION_S:
            return "too_old"
        series = self._series_for(event, now)
        if series is None:
            return "series_limit"
        predictions = event.predictions
        if predictions:
            qualified = len(predictions) > 1
            labels = [prediction_label(name, value, qualified) for name, value in predictions]
        else:
            labels = _NO_LABELS
        if not series.record(
            t,
            event.latency_s,
            event.status_code,
            event.queue_s,
            event.compute_s,
            labels,
            self.settings.max_prediction_labels,
        ):
            return "too_old"
        if event.request_id and not event.shadow:
            self.requests.remember(event.request_id, t, series, now)
        if predictions or event.features:
            self.samples.add(event.model, event.version, t, now, event.features, predictions)
        self._record_shadows(event, t, now)
        return None

    def _series_for(self, event: Event, now: float) -> Series | None:
        """The event's series (created when new), or None when the series limit refuses
        it."""
        if event.shadow:
            # A shadow copy is a comparison, not a request of the endpoint: it counts only
            # in the shadow version's own series (no endpoint, no variant), and its request
            # id (the primary's) is not one outcomes may be attributed to.
            fields = (event.model, event.version, "", "", event.source)
        else:
            fields = (event.model, event.version, event.endpoint, event.variant, event.source)
        series = self._series_of.get(fields)
        if series is not None:
            return series
        table = self.series
        before = len(table)
        series = table.get_or_create(SeriesKey(*fields), now)
        if series is None:
            return None
        if len(table) != before + 1:
            # Idle series were evicted to make room (or the cache was behind): forget what
            # the cache held rather than hand out a series no longer in the table.
            self._series_of.clear()
        self._series_of[fields] = series
        return series

    def _record_shadows(self, event: Event, t: float, now: float) -> None:
        """Shadow results the event carries, and the halves of a mirrored pair it joins."""
        for shadow in event.shadows:
            if not self.shadows.record(event.endpoint, event.latency_s, shadow, t, now):
                self.counters.shadows_dropped += 1
        if event.shadow or event.mirrored:
            for joined in self.joiner.add(event, now):
                if not joined.endpoint or not self.shadows.record(
                    joined.endpoint, joined.primary_latency_s, joined.result, joined.time or t, now
                ):
                    self.counters.shadows_dropped += 1

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> OutcomeResult:
        """Validate the whole batch, then join each outcome to its request."""
        problems: list[FieldViolation] = []
        if not outcomes:
            problems.append(FieldViolation("outcomes", "give at least one outcome"))
        for i, outcome in enumerate(outcomes):
            problems.extend(prefixed(outcome_violations(outcome), f"outcomes[{i}]"))
        if problems:
            raise violations_error(problems, "outcomes")
        now = self.clock()
        result = OutcomeResult()
        for outcome in outcomes:
            attribution = self.requests.attribute(outcome, now)
            if attribution is Attribution.ATTRIBUTED:
                result.attributed += 1
            elif attribution is Attribution.DUPLICATE:
                result.duplicates += 1
            else:
                result.unattributed += 1
            name = attribution.value
            self.counters.outcomes[name] = self.counters.outcomes.get(name, 0) + 1
        return result

    # ------------------------------------------------------------------ stats

    def _check_selector(self, key: SeriesKey, path: str) -> None:
        check_model_name(key.model, f"{path}.model", required=False)
        check_endpoint_name(key.endpoint, f"{path}.endpoint", required=False)
        if key.version < 0:
            raise InvalidArgumentError(
                f"{path}.version must be 0 (any) or positive, got {key.version}",
                field=f"{path}.version",
            )

    def _window_stats(self, buckets: list[Bucket], window_s: int, now: float) -> WindowStats:
        return WindowStats.of(
            buckets,
            window_s,
            span_seconds(now, window_s),
            self.settings.sketch_relative_accuracy,
            self.settings.sketch_max_bins,
        )

    def stats(self, key: SeriesKey, window_s: int, path: str = "key") -> WindowStats:
        """Figures of every series matching `key`, merged, over the window."""
        self._check_selector(key, path)
        now = self.clock()
        buckets = [b for s in self.series.matching(key) for b in s.rings.collect(now, window_s)]
        return self._window_stats(buckets, window_s, now)

    def list_stats(self, selector: SeriesKey, window_s: int) -> list[tuple[SeriesKey, WindowStats]]:
        """Figures per series matching `selector`, for series with requests in the window."""
        self._check_selector(selector, "filter")
        now = self.clock()
        out = []
        for series in self.series.matching(selector):
            stats = self._window_stats(series.rings.collect(now, window_s), window_s, now)
            if stats.requests:
                out.append((series.key, stats))
        out.sort(key=lambda item: (item[0].model, item[0].version, item[0].endpoint,
                                   item[0].variant, item[0].source))  # fmt: skip
        return out

    # -------------------------------------------------------------- baselines

    @staticmethod
    def _check_version(model: str, version: int) -> None:
        check_model_name(model, "model")
        if version <= 0:
            raise InvalidArgumentError(
                f"version must be a positive version number, got {version}", field="version"
            )

    async def set_baseline(
        self,
        model: str,
        version: int,
        *,
        profile: DataProfile | None = None,
        features: Sequence[FeatureSample] = (),
        predictions: Sequence[FeatureSample] = (),
    ) -> Baseline:
        """Store a version's baseline: a given profile, or one built from samples."""
        self._check_version(model, version)
        if profile is not None:
            validate_profile(profile)
        else:
            profile = build_profile(features, predictions)
        baseline = Baseline(model, version, profile, MONITOR_ORIGIN, self.clock())
        return await self.store.put_baseline(baseline)

    async def baseline(self, model: str, version: int) -> Baseline:
        """The monitor's baseline of a version, else the registry's; NOT_FOUND otherwise."""
        self._check_version(model, version)
        stored = await self.store.get_baseline(model, version)
        if stored is not None:
            return stored
        # The source caches what it read until the registry says the version changed.
        if self._baseline_source is not None:
            profile = await self._baseline_source(model, version)
            if profile is not None and not profile.is_empty():
                try:
                    validate_profile(profile, "data_profile")
                except InvalidArgumentError as exc:
                    raise FailedPreconditionError(
                        f"the registry's data profile of {model}/versions/{version} cannot be "
                        f"used as a baseline ({exc.message}); set one with SetBaseline"
                    ) from exc
                return Baseline(model, version, profile, REGISTRY_ORIGIN, self.clock())
        where = " or in the registry" if self._baseline_source is not None else ""
        raise NotFoundError(
            f"no drift baseline for {model} version {version} in the monitor{where}: set one "
            "with SetBaseline (sample data or a profile), or publish the version with a "
            "data_profile",
            metadata={"model": model, "version": str(version)},
        )

    # ------------------------------------------------------------------ drift

    async def drift_config(self, model: str) -> DriftConfig:
        """The model's thresholds (all zero when none were set: defaults apply)."""
        check_model_name(model, "model")
        config = await self.store.get_drift_config(model)
        return config or DriftConfig(model, PartialThresholds())

    async def update_drift_config(self, config: DriftConfig) -> DriftConfig:
        check_model_name(config.model, "config.model")
        config.thresholds.validate("config.thresholds")
        return await self.store.put_drift_config(replace(config, update_time=self.clock()))

    async def thresholds(self, model: str, override: PartialThresholds | None) -> Thresholds:
        """Server defaults, overridden by the model's config, overridden by `override`."""
        if override is not None:
            override.validate("thresholds")
        config = await self.store.get_drift_config(model)
        merged = self.defaults.overridden(config.thresholds if config else None)
        return merged.overridden(override)

    async def drift_report(
        self, model: str, version: int, window_s: int, override: PartialThresholds | None = None
    ) -> DriftReport:
        """Drift of a version's live samples in the window against its baseline."""
        baseline = await self.baseline(model, version)
        thresholds = await self.thresholds(model, override)
        now = self.clock()

        def live(group: str, name: str) -> tuple[list[float], list[str]]:
            return self.samples.values(model, version, group, name, now, window_s)

        report = drift_report(
            model=model,
            version=version,
            window_s=window_s,
            baseline=baseline.profile,
            baseline_origin=baseline.origin,
            live=live,
            thresholds=thresholds,
            now=now,
        )
        key = (model, version)
        self.last_drift[key] = report
        self.last_drift.move_to_end(key)
        while len(self.last_drift) > _MAX_CACHED_BASELINES:
            self.last_drift.popitem(last=False)
        return report

    # ------------------------------------------------------------------ rules

    def _normalized(self, rule: AlertRule) -> AlertRule:
        if rule.window_s == 0:
            rule = replace(rule, window_s=rules_mod.DEFAULT_WINDOW_S)
        return rule

    async def create_rule(self, rule_id: str, rule: AlertRule) -> AlertRule:
        """Validate the whole rule, store it, start evaluating it."""
        if rule_id:
            rules_mod.check_rule_id(rule_id)
        else:
            rule_id = f"rule-{uuid.uuid4().hex[:12]}"
        rule = self._normalized(replace(rule, rule_id=rule_id))
        rules_mod.validate_rule(rule)
        now = self.clock()
        rule = replace(rule, create_time=now, update_time=now, etag=new_etag())
        await self.store.create_rule(rule, self.settings.max_rules)
        self.alerts.put_rule(rule)
        return rule

    async def get_rule(self, name: str) -> AlertRule:
        return await self.store.get_rule(rules_mod.rule_id_of(name))

    async def list_rules(self, page_size: int, page_token: str) -> tuple[list[AlertRule], str]:
        if page_size < 0:
            raise InvalidArgumentError(
                f"page_size must not be negative, got {page_size}", field="page_size"
            )
        size = min(page_size or 50, 1000)
        after = decode_page_token(page_token) if page_token else ""
        return await self.store.list_rules_page(after, size)

    async def update_rule(self, patch: AlertRule, name: str, paths: list[str]) -> AlertRule:
        """Apply the masked fields of `patch`, validate the result, store it."""
        rule_id = rules_mod.rule_id_of(name, "rule.name")
        current = await self.store.get_rule(rule_id)
        if patch.etag and patch.etag != current.etag:
            raise ConflictError(
                f"alert rule {name} changed since etag {patch.etag!r} was read; get it again",
                metadata={"rule": rule_id},
            )
        updated = self._normalized(rules_mod.apply_update(current, patch, paths))
        rules_mod.validate_rule(updated)
        updated = replace(updated, update_time=self.clock(), etag=new_etag())
        await self.store.update_rule(updated, current.etag)
        self.alerts.put_rule(updated)
        return updated

    async def delete_rule(self, name: str, etag: str = "") -> None:
        rule_id = rules_mod.rule_id_of(name)
        await self.store.delete_rule(rule_id, etag)
        self.alerts.remove_rule(rule_id)

    async def metric_value(self, rule: AlertRule, now: float) -> float | None:
        """The statistic a rule watches; None when there is nothing to judge."""
        metric = rule.metric
        if metric in rules_mod.DRIFT_METRICS:
            try:
                report = await self.drift_report(
                    rule.series.model, rule.series.version, rule.window_s
                )
            except NotFoundError:
                return None
            score = {"drift_psi_max": "psi", "drift_js_max": "js_distance"}.get(
                metric, "ks_statistic"
            )
            return report.max_score(score)
        if metric == "shadow_disagreement":
            return self.shadows.disagreement(
                rule.series.endpoint, rule.series.variant, now, rule.window_s
            )
        stats = self.stats(rule.series, rule.window_s, "rule.series")
        if metric == "request_rate":
            # No traffic is a rate of 0, which is exactly what "rate below" rules watch.
            return stats.request_rate
        if stats.requests == 0:
            return None
        if metric == "error_rate":
            return stats.error_rate
        if metric == "outcome_rate":
            return stats.outcome_rate
        quantile = {"latency_p50": 0.5, "latency_p90": 0.9, "latency_p95": 0.95}.get(metric, 0.99)
        return stats.latency.quantile(quantile)

    # -------------------------------------------------- experiments / shadows

    def experiment_report(self, endpoint: str, window_s: int, alpha: float) -> ExperimentReport:
        """Per-variant figures of an endpoint and their pairwise comparisons.

        A routed request can be reported by both router and inference; when the router
        reported any traffic of the endpoint, only its view counts, so nothing is counted
        twice."""
        check_endpoint_name(endpoint, "endpoint")
        if not 0.0 < alpha <= 0.5:
            raise InvalidArgumentError(
                f"alpha must be in (0, 0.5] (0 for 0.05), got {alpha}", field="alpha"
            )
        now = self.clock()
        series = [s for s in self.series.matching(SeriesKey(endpoint=endpoint)) if s.key.variant]
        if any(s.key.source == "router" for s in series):
            series = [s for s in series if s.key.source == "router"]
        by_variant: dict[str, list[tuple[SeriesKey, list[Bucket]]]] = {}
        for s in series:
            buckets = s.rings.collect(now, window_s)
            if any(b.requests for b in buckets):
                by_variant.setdefault(s.key.variant, []).append((s.key, buckets))
        variants = []
        for variant, members in by_variant.items():
            top, _ = max(members, key=lambda m: sum(b.requests for b in m[1]))
            stats = self._window_stats([b for _, bs in members for b in bs], window_s, now)
            variants.append(VariantData(variant, top.model, top.version, stats))
        return experiment_report(endpoint, window_s, alpha, variants)

    def time_series(
        self, endpoint: str, model: str, version: str, window_s: int, step_s: int
    ) -> TimeSeries:
        """Requests, errors and latency per step: a series per variant of an endpoint, or
        per version of a model (`version`: that one only). Series without a request in the
        window are left out. As in the experiment report, where the router reported an
        endpoint's (or a version's) traffic, only its view counts."""
        query = Query.of(endpoint, model, version, window_s, step_s)
        now = self.clock()
        starts = point_starts(now, query.window_s, query.step_s)
        selector = SeriesKey(model=query.model, version=query.version, endpoint=query.endpoint)
        groups: dict[tuple[str, int], list[Series]] = {}
        for s in self.series.matching(selector):
            if query.endpoint and not s.key.variant:
                continue
            group = (s.key.variant, 0) if query.endpoint else ("", s.key.version)
            groups.setdefault(group, []).append(s)
        lines = []
        for (variant, number), members in sorted(groups.items()):
            if any(m.key.source == "router" for m in members):
                members = [m for m in members if m.key.source == "router"]
            found = line(variant, "", 0, [m.history for m in members], starts, query.step_s, now)
            if not any(p.requests for p in found.points):
                continue
            # An endpoint's variant: the version that served most of its requests.
            end = starts[-1] + query.step_s
            top = max(members, key=lambda m: requests_between(m.history, starts[0], end))
            lines.append(replace(found, model=top.key.model, version=number or top.key.version))
        return TimeSeries(lines, query.step_s, starts[0], now)

    def shadow_report(self, endpoint: str, window_s: int) -> list[ShadowSummary]:
        check_endpoint_name(endpoint, "endpoint")
        return self.shadows.report(endpoint, self.clock(), window_s)
