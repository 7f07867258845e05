"""`modelhub stats|drift|experiment|shadows|alerts|audit`: the monitor's reports as tables
(JSON with --json)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.cli.output import Output, fields, ms, percent, section, table, when
from modelhub.cli.session import Session
from modelhub.client import ClientError
from modelhub.common.channels import service_channel
from modelhub.common.names import ENDPOINTS, bare_id, qualified_name

T = TypeVar("T")


@asynccontextmanager
async def monitor_stub(s: Session) -> AsyncIterator[monitor_pb2_grpc.MonitorServiceStub]:
    async with service_channel(s.args.monitor) as channel:
        yield monitor_pb2_grpc.MonitorServiceStub(channel)


async def call(reply: Awaitable[T]) -> T:
    """An RPC's answer; its failure as ClientError (printed with its status code)."""
    try:
        return await reply
    except grpc.aio.AioRpcError as exc:
        raise ClientError.from_rpc_error(exc) from None


def _version(model: str, version: int) -> str:
    return f"{bare_id(model)}:{version}" if model else "-"


def status_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return str(code)


# ------------------------------------------------------------------------------ stats


def stats_text(reply: mpb.ListStatsResponse) -> str:
    rows = [
        (
            bare_id(st.key.model) or "*",
            st.key.version or "*",
            bare_id(st.key.endpoint, ENDPOINTS) or "-",
            st.key.variant or "-",
            st.key.source or "*",
            st.requests,
            st.errors,
            f"{st.request_rate:.3g}",
            percent(st.error_rate),
            ms(st.latency.p50),
            ms(st.latency.p99),
            st.outcomes,
            percent(st.outcome_rate) if st.outcomes else "-",
        )
        for st in reply.stats
    ]
    header = [
        "MODEL", "VERSION", "ENDPOINT", "VARIANT", "SOURCE", "REQUESTS", "ERRORS", "REQ/S",
        "ERROR%", "P50 MS", "P99 MS", "OUTCOMES", "RATE",
    ]  # fmt: skip
    if not rows:
        return "no requests in the window"
    return table(rows, header)


async def stats(s: Session) -> Output:
    args = s.args
    key = mpb.SeriesKey(
        model=qualified_name(args.model) if args.model else "",
        version=args.version,
        endpoint=qualified_name(args.endpoint, ENDPOINTS) if args.endpoint else "",
        variant=args.variant or "",
    )
    async with monitor_stub(s) as stub:
        reply = await call(
            stub.ListStats(
                mpb.ListStatsRequest(filter=key, window_seconds=args.window), metadata=s.metadata
            )
        )
    return Output.of(reply, stats_text(reply))


# ------------------------------------------------------------------------------ drift


def _drift_rows(items: Any) -> list[tuple[Any, ...]]:
    def score(value: float, judged: bool) -> str:
        return f"{value:.3f}" if judged else "-"

    rows = []
    for f in items:
        judged = not f.insufficient_data
        numeric = len(f.bin_edges) > 0
        verdict = "DRIFTED" if f.drifted else "insufficient data" if not judged else "ok"
        rows.append(
            (
                f.name,
                score(f.psi, judged),
                score(f.js_distance, judged),
                score(f.ks_statistic, judged and numeric),
                f"{f.chi2_p_value:.3g}" if judged else "-",
                f.live_count,
                verdict,
                ",".join(f.reasons) or "-",
            )
        )
    return rows


DRIFT_HEADER = ["FEATURE", "PSI", "JS", "KS", "CHI2 P", "LIVE", "DRIFT", "REASONS"]


def drift_text(report: mpb.DriftReport) -> str:
    t = report.thresholds
    head = fields(
        [
            ("MODEL", _version(report.model, report.version)),
            ("WINDOW", f"{report.window_seconds} s"),
            ("BASELINE", report.baseline_origin or "-"),
            ("THRESHOLDS", f"psi {t.psi:g}, js {t.js:g}, ks {t.ks:g}, min samples {t.min_samples}"),
            (
                "DRIFTED",
                ", ".join(report.drifted)
                or ("insufficient data" if report.insufficient_data else "none"),
            ),
        ]
    )
    parts = [head, section("FEATURES", table(_drift_rows(report.features), DRIFT_HEADER))]
    if report.predictions:
        header = ["OUTPUT", *DRIFT_HEADER[1:]]
        parts.append(section("PREDICTIONS", table(_drift_rows(report.predictions), header)))
    return "\n".join(parts)


async def drift(s: Session) -> Output:
    args = s.args
    request = mpb.GetDriftReportRequest(
        model=qualified_name(args.model), version=args.version, window_seconds=args.window
    )
    async with monitor_stub(s) as stub:
        report = await call(stub.GetDriftReport(request, metadata=s.metadata))
    return Output.of(report, drift_text(report))


# -------------------------------------------------------------------------- experiment


def experiment_text(report: mpb.ExperimentReport) -> str:
    variants = [
        (
            v.variant,
            _version(v.model, v.version),
            v.requests,
            percent(v.error_rate),
            v.outcomes,
            v.conversions,
            percent(v.outcome_rate),
            f"[{percent(v.outcome_rate_ci.lower)}, {percent(v.outcome_rate_ci.upper)}]",
            ms(v.latency.p50),
        )
        for v in report.variants
    ]
    head = fields(
        [
            ("ENDPOINT", report.endpoint),
            ("WINDOW", f"{report.window_seconds} s"),
            ("ALPHA", f"{report.alpha:g}"),
        ]
    )
    header = [
        "VARIANT", "VERSION", "REQUESTS", "ERROR%", "OUTCOMES", "CONVERSIONS", "RATE", "95% CI",
        "P50 MS",
    ]  # fmt: skip
    parts = [head, section("VARIANTS", table(variants, header) if variants else "no requests")]
    comparisons = [
        (
            f"{c.variant_b} vs {c.variant_a}",
            f"{c.difference * 100:+.2f} pp",
            f"{c.z_score:.2f}",
            f"{c.p_value:.3g}",
            "yes" if c.significant else "no",
        )
        for c in report.comparisons
    ]
    if comparisons:
        header = ["COMPARISON", "DIFFERENCE", "Z", "P", "SIGNIFICANT"]
        parts.append(section("COMPARISONS", table(comparisons, header)))
    return "\n".join(parts)


async def experiment(s: Session) -> Output:
    request = mpb.GetExperimentReportRequest(
        endpoint=qualified_name(s.args.endpoint, ENDPOINTS), window_seconds=s.args.window
    )
    async with monitor_stub(s) as stub:
        report = await call(stub.GetExperimentReport(request, metadata=s.metadata))
    return Output.of(report, experiment_text(report))


# ----------------------------------------------------------------------------- shadows


def shadows_text(report: mpb.ShadowReport) -> str:
    rows = [
        (
            sh.shadow,
            _version(sh.model, sh.version),
            sh.compared,
            sh.failed,
            percent(sh.agreement_rate) if sh.argmax_compared else "-",
            f"{sh.max_abs_diff_p50:.3g}",
            f"{sh.max_abs_diff_p99:.3g}",
            f"{sh.max_abs_diff_max:.3g}",
            ms(sh.shadow_latency.p50),
            ms(sh.primary_latency.p50),
            f"{sh.latency_delta_mean * 1000:+.3g}",
        )
        for sh in report.shadows
    ]
    header = [
        "SHADOW", "VERSION", "COMPARED", "FAILED", "AGREEMENT", "DIFF P50", "DIFF P99",
        "DIFF MAX", "SHADOW P50 MS", "PRIMARY P50 MS", "DELTA MS",
    ]  # fmt: skip
    head = f"{report.endpoint}, window {report.window_seconds} s"
    return f"{head}\n\n{table(rows, header)}" if rows else f"{head}: no shadow comparisons"


async def shadows(s: Session) -> Output:
    request = mpb.GetShadowReportRequest(
        endpoint=qualified_name(s.args.endpoint, ENDPOINTS), window_seconds=s.args.window
    )
    async with monitor_stub(s) as stub:
        report = await call(stub.GetShadowReport(request, metadata=s.metadata))
    return Output.of(report, shadows_text(report))


# ------------------------------------------------------------------------------ alerts


def alerts_text(reply: mpb.ListAlertsResponse) -> str:
    rows = [
        (
            a.rule.removeprefix("rules/"),
            a.display_name or "-",
            mpb.AlertState.Name(a.state),
            a.metric,
            f"{a.value:.4g}",
            f"{a.threshold:g}",
            when(a.active_since),
        )
        for a in reply.alerts
    ]
    header = ["RULE", "NAME", "STATE", "METRIC", "VALUE", "THRESHOLD", "SINCE"]
    return table(rows, header) if rows else "no pending or firing alerts"


async def alerts(s: Session) -> Output:
    async with monitor_stub(s) as stub:
        reply = await call(stub.ListAlerts(mpb.ListAlertsRequest(), metadata=s.metadata))
    return Output.of(reply, alerts_text(reply))


# ------------------------------------------------------------------------------- audit

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds of `--since`/`--until`: RFC 3339 (`2026-01-31T12:00:00Z`, a date) or
    a duration before now (`90s`, `15m`, `2h`, `7d`)."""
    value = text.strip()
    unit = _DURATION_UNITS.get(value[-1:].lower())
    if unit is not None and value[:-1].replace(".", "", 1).isdigit():
        return (time.time() if now is None else now) - float(value[:-1]) * unit
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration "
            "before now (90s, 15m, 2h, 7d)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _list_request(s: Session) -> mpb.ListAuditRecordsRequest:
    args = s.args
    request = mpb.ListAuditRecordsRequest(
        endpoint=args.endpoint,
        page_size=min(args.limit, 1000),
        view=mpb.AUDIT_RECORD_VIEW_FULL if args.full else mpb.AUDIT_RECORD_VIEW_BASIC,
    )
    for flag, field in ((args.since, "start_time"), (args.until, "end_time")):
        if flag:
            stamp = Timestamp()
            stamp.FromNanoseconds(round(parse_time(flag) * 1e9))
            getattr(request, field).CopyFrom(stamp)
    return request


def audit_rows(records: list[mpb.AuditRecord]) -> str:
    rows = [
        (
            r.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            r.request_id,
            bare_id(r.endpoint, ENDPOINTS),
            r.variant or "-",
            _version(r.model, r.version),
            status_name(r.status_code),
            f"{r.caller}({r.caller_role})" if r.caller_role else r.caller,
            r.size_bytes,
        )
        for r in records
    ]
    header = ["TIME (UTC)", "REQUEST ID", "ENDPOINT", "VARIANT", "MODEL", "STATUS", "CALLER"]
    return table(rows, [*header, "BYTES"])


async def audit(s: Session) -> Output:
    """The payload audit log kept by the monitor (admin role). `get` and `list --full`
    print JSON: the records carry their payloads."""
    args = s.args
    async with monitor_stub(s) as stub:
        if args.action == "get":
            request = mpb.GetAuditRecordRequest(request_id=args.request_id)
            record = await call(stub.GetAuditRecord(request, metadata=s.metadata))
            out = Output.of(record, "")
            return Output(out.render(True), out.data)
        page_request = _list_request(s)
        records: list[mpb.AuditRecord] = []
        while len(records) < args.limit:
            page = await call(stub.ListAuditRecords(page_request, metadata=s.metadata))
            records.extend(page.records)
            if not page.next_page_token:
                break
            page_request.page_token = page.next_page_token
    records = records[: args.limit]
    out = Output.of_list(records, audit_rows(records))
    return Output(out.render(True), out.data) if args.full else out
