"""`modelhub`: publish, promote and inspect models from the shell.

    modelhub models push fraud model.onnx --alias challenger
    modelhub alias set fraud champion 3
    modelhub endpoints apply fraud endpoint.json
    modelhub versions list fraud
    modelhub endpoints audit fraud --sample-rate 0.1 --redact ssn
    modelhub audit list --endpoint fraud --since 1h
    modelhub score fraud@champion --input data.parquet --output scores.parquet

The registry address comes from --registry or MODELHUB_REGISTRY_ADDRESS (default
127.0.0.1:50051), the token from --token or MODELHUB_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.cli import score as score_cli
from modelhub.client import ClientError, RegistryClient
from modelhub.common.errors import FailedPreconditionError, ModelHubError
from modelhub.common.status import status_code_for

STATUS_NAMES = {pb.ModelVersion.READY: "READY", pb.ModelVersion.ARCHIVED: "ARCHIVED"}


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


class ProgressBar:
    """A one-line progress bar on stderr (only when stderr is a terminal): amount, rate
    and ETA in `unit`s (`scale` of them per counted item; rows: unit "rows", scale 1)."""

    def __init__(self, label: str, unit: str = "MB", scale: float = 1e6) -> None:
        self.label = label
        self.unit = unit
        self.scale = scale
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()
        self.first: int | None = None  # work done before this run (resumed) is not a rate

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if self.first is None:
            self.first = done
        width = 30
        filled = int(width * done / total)
        rate = (done - self.first) / max(time.monotonic() - self.start, 1e-6)
        left = int((total - done) / rate) if rate > 0 else -1
        eta = f" ETA {left // 60}:{left % 60:02d}" if left >= 0 else ""
        digits = 0 if self.scale == 1 else 1
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done / self.scale:,.{digits}f}/{total / self.scale:,.{digits}f} {self.unit} "
            f"{rate / self.scale:,.{digits}f} {self.unit}/s{eta}"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells
    )


def _load_message(path: str, message: Message) -> Message:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return json_format.Parse(text, message)


async def _models(client: RegistryClient, args: argparse.Namespace) -> str:
    if args.action == "create":
        return _json(await client.create_model(args.model, args.description, args.tag or []))
    if args.action == "get":
        return _json(await client.get_model(args.model))
    if args.action == "delete":
        await client.delete_model(args.model)
        return f"deleted models/{args.model}"
    if args.action == "push":
        profile = None
        if args.profile:
            profile = _load_message(args.profile, types_pb2.DataProfile())
        version = await client.push(
            args.model,
            args.file,
            description=args.description,
            author=args.author or os.environ.get("USER", ""),
            source=pb.Source(run_id=args.run_id, dataset=args.dataset, commit=args.commit),
            tags=args.tag or [],
            aliases=args.alias or [],
            data_profile=profile,  # type: ignore[arg-type]
            progress=ProgressBar(f"pushing {Path(args.file).name}"),
        )
        return (
            _json(version)
            if args.json
            else (
                f"{version.name} sha256:{version.artifact.sha256[:12]} "
                f"aliases={','.join(version.aliases) or '-'}"
            )
        )
    models = await client.list_models(args.prefix, args.tag_filter)
    if args.json:
        return json.dumps([json.loads(_json(m)) for m in models], indent=2)
    rows = [(m.name, m.latest_version, ",".join(m.tags), m.description[:40]) for m in models]
    return _table(rows, ["NAME", "LATEST", "TAGS", "DESCRIPTION"])


async def _versions(client: RegistryClient, args: argparse.Namespace) -> str:
    if args.action == "get":
        return _json(await client.resolve(args.reference))
    if args.action == "download":
        version = await client.download(
            args.reference, args.output, ProgressBar(f"downloading {args.reference}")
        )
        return f"{version.name} → {args.output} (sha256 verified)"
    if args.action == "optimize":
        from modelhub.optimize.cli import optimize

        done = await optimize(
            client,
            args.reference,
            args.method,
            calibration=args.calibration,
            validation=args.validation,
            alias=args.alias,
            shadow_on=args.shadow_on,
            shadow_rate=args.shadow_rate,
            rows=args.rows,
            threads=args.threads,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
        if args.json:
            return _json(done.version)
        head = f"registered {done.version.name} ({args.method} of {done.version.derivation.parent})"
        return "\n".join([head, *done.report.lines(), *done.notes])
    if args.action == "report":
        from modelhub.optimize.cli import report_from_pb

        version = await client.resolve(args.reference)
        if not version.HasField("derivation"):
            raise FailedPreconditionError(
                f"{version.name} is not an optimized derivative: it has no report"
            )
        lines = [f"{version.name}: {version.derivation.method} of {version.derivation.parent}"]
        if version.HasField("evaluation"):
            lines += report_from_pb(version).lines()
        return _json(version) if args.json else "\n".join(lines)
    if args.action == "archive":
        return _json(await client.archive(args.reference))
    if args.action == "delete":
        await client.delete_version(args.reference)
        return f"deleted {args.reference}"
    versions = await client.list_versions(args.model, alias=args.alias or "")
    if args.json:
        return json.dumps([json.loads(_json(v)) for v in versions], indent=2)
    rows = [
        (
            v.version,
            STATUS_NAMES.get(v.status, "?"),
            ",".join(v.aliases) or "-",
            v.artifact.sha256[:12],
            v.artifact.size_bytes,
            v.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        )
        for v in versions
    ]
    return _table(rows, ["VERSION", "STATUS", "ALIASES", "SHA256", "BYTES", "CREATED"])


async def _alias(client: RegistryClient, args: argparse.Namespace) -> str:
    if args.action == "set":
        alias = await client.set_alias(args.model, args.alias, args.version)
        return f"{alias.name} → version {alias.version}"
    if args.action == "delete":
        await client.delete_alias(args.model, args.alias)
        return f"deleted alias {args.alias} of models/{args.model}"
    aliases = await client.list_aliases(args.model)
    return _table([(a.alias, a.version) for a in aliases], ["ALIAS", "VERSION"])


async def _deployments(client: RegistryClient, args: argparse.Namespace) -> str:
    if args.action == "apply":
        spec = _load_message(args.file, pb.Deployment())
        return _json(await client.apply_deployment(args.deployment, spec))  # type: ignore[arg-type]
    if args.action == "delete":
        await client.delete_deployment(args.deployment)
        return f"deleted deployments/{args.deployment}"
    items = await client.list_deployments()
    rows = [
        (d.name, d.model, ",".join(str(v.resolved_version) for v in d.versions), d.instance_count)
        for d in items
    ]
    return _table(rows, ["NAME", "MODEL", "VERSIONS", "INSTANCES"])


async def _endpoints(client: RegistryClient, args: argparse.Namespace) -> str:
    if args.action == "apply":
        spec = _load_message(args.file, pb.Endpoint())
        return _json(await client.apply_endpoint(args.endpoint, spec))  # type: ignore[arg-type]
    if args.action == "get":
        return _json(await client.get_endpoint(args.endpoint))
    if args.action == "delete":
        await client.delete_endpoint(args.endpoint)
        return f"deleted endpoints/{args.endpoint}"
    if args.action == "audit":
        redact = [n.strip() for value in args.redact or [] for n in value.split(",") if n.strip()]
        endpoint = await client.set_endpoint_audit(args.endpoint, args.sample_rate, redact)
        return _json(endpoint) if args.json else f"{endpoint.name}: audit {_audit_policy(endpoint)}"
    items = await client.list_endpoints()
    rows = [
        (
            e.name,
            " ".join(
                f"{v.name}={v.weight:g}→{v.model.removeprefix('models/')}:"
                f"{v.selector.resolved_version}"
                for v in e.variants
            ),
            " ".join(f"{s.name}@{s.sample_rate:g}" for s in e.shadows) or "-",
            _audit_policy(e),
        )
        for e in items
    ]
    return _table(rows, ["NAME", "VARIANTS", "SHADOWS", "AUDIT"])


def _audit_policy(endpoint: pb.Endpoint) -> str:
    audit = endpoint.audit
    if not endpoint.HasField("audit") or audit.sample_rate <= 0:
        return "off"
    redacted = f" redact={','.join(audit.redact_inputs)}" if audit.redact_inputs else ""
    return f"{audit.sample_rate:g}{redacted}"


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds of `--since`/`--until`: RFC 3339 (`2026-01-31T12:00:00Z`, a date) or
    a duration before now (`90s`, `15m`, `2h`, `7d`)."""
    from datetime import UTC, datetime

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


async def _audit(client: RegistryClient, args: argparse.Namespace) -> str:
    """The payload audit log kept by the monitor (admin role)."""
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    from modelhub.api.monitor.v1 import monitor_pb2 as mpb
    from modelhub.api.monitor.v1 import monitor_pb2_grpc
    from modelhub.common.channels import service_channel

    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    async with service_channel(args.monitor) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        try:
            if args.action == "get":
                return _json(
                    await stub.GetAuditRecord(
                        mpb.GetAuditRecordRequest(request_id=args.request_id), metadata=metadata
                    )
                )
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
            records: list[mpb.AuditRecord] = []
            while len(records) < args.limit:
                page = await stub.ListAuditRecords(request, metadata=metadata)
                records.extend(page.records)
                if not page.next_page_token:
                    break
                request.page_token = page.next_page_token
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None
    records = records[: args.limit]
    if args.json or args.full:
        return json.dumps([json.loads(_json(r)) for r in records], indent=2)
    rows = [
        (
            r.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            r.request_id,
            r.endpoint.removeprefix("endpoints/"),
            r.variant or "-",
            f"{r.model.removeprefix('models/')}:{r.version}" if r.model else "-",
            _status_name(r.status_code),
            f"{r.caller}({r.caller_role})" if r.caller_role else r.caller,
            r.size_bytes,
        )
        for r in records
    ]
    return _table(
        rows,
        ["TIME (UTC)", "REQUEST ID", "ENDPOINT", "VARIANT", "MODEL", "STATUS", "CALLER", "BYTES"],
    )


def _status_name(code: int) -> str:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return str(code)


async def _monitor(client: RegistryClient, args: argparse.Namespace) -> str:
    """Monitor reports (stats, drift, experiment, shadows, alerts) as JSON."""
    import grpc

    from modelhub.api.monitor.v1 import monitor_pb2 as mpb
    from modelhub.api.monitor.v1 import monitor_pb2_grpc
    from modelhub.common.channels import service_channel

    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    window = args.window
    async with service_channel(args.monitor) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        try:
            if args.group == "stats":
                key = mpb.SeriesKey(
                    model=f"models/{args.model}" if args.model else "",
                    version=args.version,
                    endpoint=f"endpoints/{args.endpoint}" if args.endpoint else "",
                    variant=args.variant or "",
                )
                reply: Message = await stub.ListStats(
                    mpb.ListStatsRequest(filter=key, window_seconds=window), metadata=metadata
                )
            elif args.group == "drift":
                reply = await stub.GetDriftReport(
                    mpb.GetDriftReportRequest(
                        model=f"models/{args.model}", version=args.version, window_seconds=window
                    ),
                    metadata=metadata,
                )
            elif args.group == "experiment":
                reply = await stub.GetExperimentReport(
                    mpb.GetExperimentReportRequest(
                        endpoint=f"endpoints/{args.endpoint}", window_seconds=window
                    ),
                    metadata=metadata,
                )
            elif args.group == "shadows":
                reply = await stub.GetShadowReport(
                    mpb.GetShadowReportRequest(
                        endpoint=f"endpoints/{args.endpoint}", window_seconds=window
                    ),
                    metadata=metadata,
                )
            else:
                reply = await stub.ListAlerts(mpb.ListAlertsRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None
    return _json(reply)


async def _watch(client: RegistryClient, args: argparse.Namespace) -> str:
    async for event in client.watch(args.start_revision):
        line = json_format.MessageToDict(event, preserving_proto_field_name=True)
        print(json.dumps(line), flush=True)
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelhub", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--registry",
        default=os.environ.get("MODELHUB_REGISTRY_ADDRESS", "127.0.0.1:50051"),
        help="registry address host:port",
    )
    parser.add_argument("--token", default=os.environ.get("MODELHUB_TOKEN"))
    parser.add_argument("--json", action="store_true", help="print JSON")
    groups = parser.add_subparsers(dest="group", required=True)

    models = groups.add_parser("models", help="models and publishing").add_subparsers(
        dest="action", required=True
    )
    p = models.add_parser("create")
    p.add_argument("model")
    p.add_argument("--description", default="")
    p.add_argument("--tag", action="append")
    models.add_parser("get").add_argument("model")
    models.add_parser("delete").add_argument("model")
    p = models.add_parser("list")
    p.add_argument("--prefix", default="")
    p.add_argument("--tag", dest="tag_filter", default="")
    p = models.add_parser("push", help="upload an ONNX file as a new version")
    p.add_argument("model")
    p.add_argument("file")
    p.add_argument("--description", default="")
    p.add_argument("--author", default="")
    p.add_argument("--run-id", default="")
    p.add_argument("--dataset", default="")
    p.add_argument("--commit", default="")
    p.add_argument("--tag", action="append")
    p.add_argument("--alias", action="append", help="point this alias at the new version")
    p.add_argument("--profile", help="DataProfile JSON file (the drift baseline)")

    versions = groups.add_parser("versions", help="model versions").add_subparsers(
        dest="action", required=True
    )
    p = versions.add_parser("list")
    p.add_argument("model")
    p.add_argument("--alias")
    for action in ("get", "archive", "delete"):
        versions.add_parser(action).add_argument(
            "reference", help="fraud@champion, fraud:3, fraud/versions/3"
        )
    p = versions.add_parser("download")
    p.add_argument("reference")
    p.add_argument("-o", "--output", required=True)
    p = versions.add_parser(
        "optimize",
        help="build a quantized (int8) or float16 derivative, measure it against its "
        "parent and register it with its lineage and report",
    )
    p.add_argument("reference", help="the parent: fraud@champion, fraud:3")
    p.add_argument("--method", required=True, choices=["dynamic-int8", "static-int8", "fp16"])
    p.add_argument(
        "--calibration",
        default="",
        help="static-int8 calibration rows (.npz, one array per input; .npy for one input); "
        "default: synthesised from the parent's data profile",
    )
    p.add_argument(
        "--validation",
        default="",
        help="rows to compare the two on (.npz/.npy); default: synthesised from the "
        "parent's data profile (the report says so)",
    )
    p.add_argument("--rows", type=int, default=1024, help="rows synthesised (default 1024)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads when measuring")
    p.add_argument("--alias", default="", help="point this alias at the derivative")
    p.add_argument(
        "--shadow-on",
        default="",
        metavar="ENDPOINT",
        help="add the derivative as a shadow on this endpoint (and to the model's "
        "deployments) so the shadow comparison measures it on live traffic",
    )
    p.add_argument("--shadow-rate", type=float, default=1.0, help="share of traffic mirrored")
    versions.add_parser("report", help="a derivative's lineage and evaluation report").add_argument(
        "reference"
    )

    alias = groups.add_parser("alias", help="aliases").add_subparsers(dest="action", required=True)
    p = alias.add_parser("set")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("version", type=int)
    p = alias.add_parser("delete")
    p.add_argument("model")
    p.add_argument("alias")
    alias.add_parser("list").add_argument("model")

    deployments = groups.add_parser("deployments").add_subparsers(dest="action", required=True)
    p = deployments.add_parser("apply", help="create or replace from a JSON Deployment")
    p.add_argument("deployment")
    p.add_argument("file", help="JSON file, - for stdin")
    deployments.add_parser("delete").add_argument("deployment")
    deployments.add_parser("list")

    endpoints = groups.add_parser("endpoints").add_subparsers(dest="action", required=True)
    p = endpoints.add_parser("apply", help="create or replace from a JSON Endpoint")
    p.add_argument("endpoint")
    p.add_argument("file", help="JSON file, - for stdin")
    endpoints.add_parser("get").add_argument("endpoint")
    endpoints.add_parser("delete").add_argument("endpoint")
    endpoints.add_parser("list")
    p = endpoints.add_parser(
        "audit", help="set the payload audit policy (sample rate, redacted inputs)"
    )
    p.add_argument("endpoint")
    p.add_argument(
        "--sample-rate",
        type=float,
        required=True,
        help="fraction of requests recorded with their payloads, 0..1 (0: off)",
    )
    p.add_argument(
        "--redact", action="append", help="input name never recorded (repeat, or comma-separate)"
    )

    monitor_address = os.environ.get("MODELHUB_MONITOR_ADDRESS", "127.0.0.1:50054")
    audit = groups.add_parser(
        "audit", help="the payload audit log kept by the monitor (admin role)"
    ).add_subparsers(dest="action", required=True)
    p = audit.add_parser("list", help="records, newest first (summaries unless --full)")
    p.add_argument("--endpoint", default="", help="endpoint id")
    p.add_argument("--since", default="", help="RFC 3339 time or a duration before now (15m, 2h)")
    p.add_argument("--until", default="", help="RFC 3339 time or a duration before now")
    p.add_argument("--limit", type=int, default=50, help="most records (default 50)")
    p.add_argument("--full", action="store_true", help="with the payloads (JSON)")
    p.add_argument("--monitor", default=monitor_address, help="monitor address host:port")
    p = audit.add_parser("get", help="one request's record with its payloads (JSON)")
    p.add_argument("request_id")
    p.add_argument("--monitor", default=monitor_address, help="monitor address host:port")
    for name, help_text in [
        ("stats", "live statistics per model/version/endpoint/variant"),
        ("drift", "drift report of a model version"),
        ("experiment", "per-variant outcome rates and significance on an endpoint"),
        ("shadows", "shadow vs primary comparison on an endpoint"),
        ("alerts", "pending and firing alerts"),
    ]:
        p = groups.add_parser(name, help=help_text)
        p.add_argument("--monitor", default=monitor_address, help="monitor address host:port")
        p.add_argument("--window", type=int, default=300, help="window in seconds (60/300/3600)")
        if name in ("stats", "drift"):
            p.add_argument("model", nargs="?" if name == "stats" else None, default="")
            p.add_argument("--version", type=int, default=0)
        if name in ("stats", "experiment", "shadows"):
            p.add_argument(
                "--endpoint" if name == "stats" else "endpoint", default="", help="endpoint id"
            )
        if name == "stats":
            p.add_argument("--variant", default="")

    p = groups.add_parser("watch", help="follow the registry's change feed")
    p.add_argument("--from", dest="start_revision", type=int, default=0)
    score_cli.add_parser(groups)
    return parser


async def _score(client: RegistryClient, args: argparse.Namespace) -> str:
    return await score_cli.run(client, args, ProgressBar)


COMMANDS: dict[str, Callable[[RegistryClient, argparse.Namespace], Awaitable[str]]] = {
    "models": _models,
    "versions": _versions,
    "alias": _alias,
    "deployments": _deployments,
    "endpoints": _endpoints,
    "watch": _watch,
    "audit": _audit,
    "stats": _monitor,
    "drift": _monitor,
    "experiment": _monitor,
    "shadows": _monitor,
    "alerts": _monitor,
    "score": _score,
}


async def run(args: argparse.Namespace) -> str:
    from modelhub.common.settings import TlsSettings

    async with RegistryClient(args.registry, args.token, tls=TlsSettings()) as client:
        return await COMMANDS[args.group](client, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = asyncio.run(run(args))
    except ClientError as exc:
        print(f"error: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 1
    except ModelHubError as exc:  # local work (e.g. batch scoring) refused
        code = status_code_for(type(exc))
        print(f"error: {code.name if code else exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError, json_format.ParseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
