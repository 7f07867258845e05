"""The MonitorService servicer: proto → domain call → proto, nothing more. Errors are
domain exceptions; the edge interceptor turns them into status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from opentelemetry import trace

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.common.auth import Role
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.telemetry import record_span_in_trace
from modelhub.monitor import convert
from modelhub.monitor.audit import AuditLog
from modelhub.monitor.monitor import IngestResult, Monitor
from modelhub.monitor.windows import check_window

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MonitorService"].full_name

# Least role per method: reads need READER; what feeds or configures the monitor needs
# PUBLISHER (the router and inference report with publisher tokens); deletes need ADMIN,
# and so do reads of the payload audit log (request and response payloads are sensitive).
ROLES: dict[str, Role] = {
    "IngestEvents": Role.PUBLISHER,
    "RecordOutcomes": Role.PUBLISHER,
    "GetStats": Role.READER,
    "ListStats": Role.READER,
    "SetBaseline": Role.PUBLISHER,
    "GetBaseline": Role.READER,
    "GetDriftConfig": Role.READER,
    "UpdateDriftConfig": Role.PUBLISHER,
    "GetDriftReport": Role.READER,
    "CreateAlertRule": Role.PUBLISHER,
    "GetAlertRule": Role.READER,
    "ListAlertRules": Role.READER,
    "UpdateAlertRule": Role.PUBLISHER,
    "DeleteAlertRule": Role.ADMIN,
    "ListAlerts": Role.READER,
    "WatchAlerts": Role.READER,
    "GetExperimentReport": Role.READER,
    "GetShadowReport": Role.READER,
    "QueryTimeSeries": Role.READER,
    "IngestAuditRecords": Role.PUBLISHER,
    "ListAuditRecords": Role.ADMIN,
    "GetAuditRecord": Role.ADMIN,
}


_STATS_DEFAULT_WINDOW = 300
_REPORT_DEFAULT_WINDOW = 3600


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    """gRPC face of a `Monitor`."""

    def __init__(self, monitor: Monitor, audit: AuditLog) -> None:
        self._monitor = monitor
        self._audit = audit
        self._tracer = trace.get_tracer("modelhub.monitor")

    async def IngestEvents(
        self,
        request_iterator: AsyncIterator[pb.IngestEventsRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.IngestEventsResponse:
        total = IngestResult()
        async for request in request_iterator:
            events, problems = convert.events_from_proto(request)
            try:
                result = self._monitor.ingest(
                    events, strict=request.strict, decode_violations=problems
                )
            except InvalidArgumentError as exc:
                if not total.accepted:
                    raise
                # The call fails, so the client never sees the response counting them.
                raise InvalidArgumentError(
                    f"{exc.message} ({total.accepted} events of earlier batches in this "
                    "stream were kept)",
                    violations=exc.violations,
                ) from exc
            total.add(result)
            for event in request.events:
                if event.traceparent:
                    record_span_in_trace(
                        self._tracer,
                        "monitor.ingest_event",
                        event.traceparent,
                        {"modelhub.request_id": event.request_id, "modelhub.model": event.model},
                    )
        return convert.ingest_response(total)

    async def RecordOutcomes(
        self, request: pb.RecordOutcomesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordOutcomesResponse:
        result = self._monitor.record_outcomes(convert.outcomes_from_proto(request))
        return convert.outcomes_response(result)

    async def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.Stats:
        window = check_window(request.window_seconds, _STATS_DEFAULT_WINDOW)
        key = convert.series_key_from_proto(request.key)
        return convert.stats_to_proto(key, self._monitor.stats(key, window))

    async def ListStats(
        self, request: pb.ListStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStatsResponse:
        window = check_window(request.window_seconds, _STATS_DEFAULT_WINDOW)
        selector = convert.series_key_from_proto(request.filter)
        return pb.ListStatsResponse(
            stats=[
                convert.stats_to_proto(key, stats)
                for key, stats in self._monitor.list_stats(selector, window)
            ]
        )

    async def SetBaseline(
        self, request: pb.SetBaselineRequest, context: grpc.aio.ServicerContext
    ) -> pb.Baseline:
        source = request.WhichOneof("source")
        if source == "profile":
            baseline = await self._monitor.set_baseline(
                request.model, request.version, profile=convert.profile_from_proto(request.profile)
            )
        elif source == "samples":
            baseline = await self._monitor.set_baseline(
                request.model,
                request.version,
                features=convert.samples_from_proto(request.samples.features),
                predictions=convert.samples_from_proto(request.samples.predictions),
            )
        else:
            raise InvalidArgumentError(
                "give the baseline as `profile` or as `samples`", field="source"
            )
        return convert.baseline_to_proto(baseline)

    async def GetBaseline(
        self, request: pb.GetBaselineRequest, context: grpc.aio.ServicerContext
    ) -> pb.Baseline:
        baseline = await self._monitor.baseline(request.model, request.version)
        return convert.baseline_to_proto(baseline)

    async def GetDriftConfig(
        self, request: pb.GetDriftConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.DriftConfig:
        return convert.drift_config_to_proto(await self._monitor.drift_config(request.model))

    async def UpdateDriftConfig(
        self, request: pb.UpdateDriftConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.DriftConfig:
        config = convert.drift_config_from_proto(request.config)
        return convert.drift_config_to_proto(await self._monitor.update_drift_config(config))

    async def GetDriftReport(
        self, request: pb.GetDriftReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.DriftReport:
        window = check_window(request.window_seconds, _REPORT_DEFAULT_WINDOW)
        override = (
            convert.thresholds_from_proto(request.thresholds)
            if request.HasField("thresholds")
            else None
        )
        report = await self._monitor.drift_report(request.model, request.version, window, override)
        return convert.drift_report_to_proto(report)

    async def CreateAlertRule(
        self, request: pb.CreateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlertRule:
        rule = await self._monitor.create_rule(
            request.rule_id, convert.rule_from_proto(request.rule)
        )
        return convert.rule_to_proto(rule)

    async def GetAlertRule(
        self, request: pb.GetAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlertRule:
        return convert.rule_to_proto(await self._monitor.get_rule(request.name))

    async def ListAlertRules(
        self, request: pb.ListAlertRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAlertRulesResponse:
        rules, token = await self._monitor.list_rules(request.page_size, request.page_token)
        return pb.ListAlertRulesResponse(
            rules=[convert.rule_to_proto(r) for r in rules], next_page_token=token
        )

    async def UpdateAlertRule(
        self, request: pb.UpdateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.AlertRule:
        rule = await self._monitor.update_rule(
            convert.rule_from_proto(request.rule),
            request.rule.name,
            convert.update_paths(request),
        )
        return convert.rule_to_proto(rule)

    async def DeleteAlertRule(
        self, request: pb.DeleteAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAlertRuleResponse:
        await self._monitor.delete_rule(request.name, request.etag)
        return pb.DeleteAlertRuleResponse()

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAlertsResponse:
        return pb.ListAlertsResponse(
            alerts=[convert.alert_to_proto(a) for a in self._monitor.alerts.alerts()]
        )

    async def WatchAlerts(
        self, request: pb.WatchAlertsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AlertEvent]:
        # An async generator, never `context.write`: the OpenTelemetry aio interceptor
        # only supports the former.
        async for event in self._monitor.alerts.watch(request.send_initial):
            yield convert.alert_event_to_proto(event)

    async def GetExperimentReport(
        self, request: pb.GetExperimentReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExperimentReport:
        window = check_window(request.window_seconds, _REPORT_DEFAULT_WINDOW)
        report = self._monitor.experiment_report(request.endpoint, window, request.alpha or 0.05)
        return convert.experiment_report_to_proto(report)

    async def QueryTimeSeries(
        self, request: pb.QueryTimeSeriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.TimeSeries:
        series = self._monitor.time_series(
            request.endpoint,
            request.model,
            request.version,
            request.window_seconds,
            request.step_seconds,
        )
        return convert.timeseries_to_proto(series)

    async def GetShadowReport(
        self, request: pb.GetShadowReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShadowReport:
        window = check_window(request.window_seconds, _REPORT_DEFAULT_WINDOW)
        shadows = self._monitor.shadow_report(request.endpoint, window)
        return convert.shadow_report_to_proto(request.endpoint, window, shadows)

    async def IngestAuditRecords(
        self, request: pb.IngestAuditRecordsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestAuditRecordsResponse:
        entries, problems = convert.audit_entries_from_proto(request)
        result = await self._audit.ingest(entries, problems)
        return convert.audit_ingest_response(result)

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditRecordsResponse:
        payloads = request.view == pb.AUDIT_RECORD_VIEW_FULL
        entries, token = await self._audit.list(
            request.endpoint,
            convert.optional_time(request, "start_time"),
            convert.optional_time(request, "end_time"),
            request.page_size,
            request.page_token,
            payloads,
        )
        return pb.ListAuditRecordsResponse(
            records=[convert.audit_record_to_proto(e, payloads) for e in entries],
            next_page_token=token,
        )

    async def GetAuditRecord(
        self, request: pb.GetAuditRecordRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuditRecord:
        entry = await self._audit.get(request.request_id)
        return convert.audit_record_to_proto(entry, True)
