"""`modelhub models|versions|alias|deployments|endpoints|watch`: the registry's resources,
as tables and `KEY  value` blocks, or JSON with --json."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.cli import specs
from modelhub.cli.output import (
    Output,
    dumps,
    fields,
    message_dict,
    now,
    section,
    size,
    table,
    when,
    write,
)
from modelhub.cli.session import Session
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import (
    DEPLOYMENTS,
    ENDPOINTS,
    alias_name,
    bare_id,
    qualified_name,
)

STATUS_NAMES = {pb.ModelVersion.READY: "READY", pb.ModelVersion.ARCHIVED: "ARCHIVED"}


# --------------------------------------------------------------------------- rendering


def selector_text(selector: pb.VersionSelector) -> str:
    """`alias champion`, `version 3` or `latest`."""
    which = selector.WhichOneof("selector")
    if which == "alias":
        return f"alias {selector.alias}"
    if which == "version":
        return f"version {selector.version}"
    return "latest"


def _resolved(selector: pb.VersionSelector) -> str:
    return str(selector.resolved_version) if selector.resolved_version else "-"


def _pairs(values: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values))


def model_text(model: pb.Model) -> str:
    return fields(
        [
            ("NAME", model.name),
            ("DESCRIPTION", model.description),
            ("TAGS", ",".join(model.tags)),
            ("LABELS", _pairs(model.labels.items())),
            ("LATEST VERSION", model.latest_version or "-"),
            ("CREATED", when(model.create_time)),
            ("UPDATED", when(model.update_time)),
        ]
    )


def _tensors(tensors: Iterable[types_pb2.TensorSpec]) -> str:
    rows = [(t.name, t.datatype, list(t.shape)) for t in tensors]
    return table(rows, ["NAME", "DATATYPE", "SHAPE"]) if rows else "-"


def _graph(schema: pb.ModelSchema) -> str | None:
    if not schema.ir_version and not schema.producer_name:
        return None
    opsets = " ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in schema.opsets)
    producer = f"{schema.producer_name} {schema.producer_version}".strip() or "-"
    return f"{schema.graph_name or '-'} (IR {schema.ir_version}, opsets {opsets}, by {producer})"


def version_text(version: pb.ModelVersion) -> str:
    """`modelhub versions get`: the version, its artifact, lineage and tensors."""
    source = version.source
    derivation = version.derivation
    profile = version.data_profile
    head = fields(
        [
            ("NAME", version.name),
            ("STATUS", STATUS_NAMES.get(version.status, "?")),
            ("ALIASES", ",".join(version.aliases)),
            ("DESCRIPTION", version.description),
            ("AUTHOR", version.author),
            ("TAGS", ",".join(version.tags)),
            ("METADATA", _pairs(version.metadata.items())),
            ("SOURCE", _pairs((k, v) for k, v in message_dict(source).items() if v)),
            (
                "ARTIFACT",
                f"sha256:{version.artifact.sha256} ({size(version.artifact.size_bytes)}, "
                f"{version.artifact.format or 'onnx'})",
            ),
            ("GRAPH", _graph(version.schema)),
            (
                "DERIVED FROM",
                f"{derivation.parent} ({derivation.method})"
                if version.HasField("derivation")
                else None,
            ),
            (
                "DATA PROFILE",
                f"{len(profile.features)} features, {len(profile.predictions)} predictions"
                if version.HasField("data_profile")
                else None,
            ),
            ("CREATED", when(version.create_time)),
            ("UPDATED", when(version.update_time)),
        ]
    )
    inputs = section("INPUTS", _tensors(version.schema.inputs))
    outputs = section("OUTPUTS", _tensors(version.schema.outputs))
    return head + "\n" + inputs + "\n" + outputs


def sticky_text(endpoint: pb.Endpoint) -> str:
    if not endpoint.HasField("sticky_key") or not endpoint.sticky_key.name:
        return "none (every request picks at random)"
    source = pb.StickyKey.Source.Name(endpoint.sticky_key.source).lower()
    return f"{source}:{endpoint.sticky_key.name}"


def audit_text(endpoint: pb.Endpoint) -> str:
    audit = endpoint.audit
    if not endpoint.HasField("audit") or audit.sample_rate <= 0:
        return "off"
    redacted = f" redact={','.join(audit.redact_inputs)}" if audit.redact_inputs else ""
    return f"{audit.sample_rate:g}{redacted}"


def endpoint_text(endpoint: pb.Endpoint) -> str:
    """`modelhub endpoints get`: the policy, its variants and shadows as resolved now."""
    head = fields(
        [
            ("NAME", endpoint.name),
            ("DESCRIPTION", endpoint.description),
            ("STICKY KEY", sticky_text(endpoint)),
            ("SALT", endpoint.salt),
            ("FALLBACK", endpoint.fallback),
            ("AUDIT", audit_text(endpoint)),
            ("LABELS", _pairs(endpoint.labels.items())),
            ("UPDATED", when(endpoint.update_time)),
        ]
    )
    variants = [
        (
            v.name,
            f"{v.weight:g}",
            bare_id(v.model),
            selector_text(v.selector),
            _resolved(v.selector),
            ",".join(v.pool) or "default",
        )
        for v in endpoint.variants
    ]
    shadows = [
        (
            s.name,
            f"{s.sample_rate:g}",
            bare_id(s.model),
            selector_text(s.selector),
            _resolved(s.selector),
            ",".join(s.pool) or "default",
        )
        for s in endpoint.shadows
    ]
    parts = [head, section("VARIANTS", table(variants, _route_header("WEIGHT")))]
    if shadows:
        parts.append(section("SHADOWS", table(shadows, _route_header("SAMPLE RATE"))))
    return "\n".join(parts)


def _route_header(share: str) -> list[str]:
    return ["NAME", share, "MODEL", "SELECTOR", "VERSION", "POOL"]


def _batching(config: types_pb2.BatchingConfig) -> str:
    return _pairs((k, str(v)) for k, v in message_dict(config).items()) or "server defaults"


def deployment_text(deployment: pb.Deployment) -> str:
    """`modelhub deployments get`: what the inference replicas keep loaded, and how."""
    versions = [f"{selector_text(v)} → {_resolved(v)}" for v in deployment.versions]
    return fields(
        [
            ("NAME", deployment.name),
            ("MODEL", deployment.model),
            ("VERSIONS", ", ".join(versions)),
            ("INSTANCES", deployment.instance_count or 1),
            ("DEVICE", types_pb2.Device.Name(deployment.device or types_pb2.AUTO)),
            ("BATCHING", _batching(deployment.batching)),
            ("RUNTIME", _pairs((k, str(v)) for k, v in message_dict(deployment.runtime).items())),
            ("LABELS", _pairs(deployment.labels.items())),
            ("UPDATED", when(deployment.update_time)),
        ]
    )


def _variants_cell(endpoint: pb.Endpoint) -> str:
    return " ".join(
        f"{v.name}={v.weight:g}→{bare_id(v.model)}:{v.selector.resolved_version}"
        for v in endpoint.variants
    )


# ----------------------------------------------------------------------------- models


async def models(s: Session) -> Output:
    args, client = s.args, s.client
    if args.action == "create":
        model = await client.create_model(args.model, args.description, args.tag or [])
        return Output.of(model, model_text(model))
    if args.action == "get":
        model = await client.get_model(args.model)
        return Output.of(model, model_text(model))
    if args.action == "delete":
        await client.delete_model(args.model)
        name = qualified_name(args.model)
        return Output(f"deleted {name}", {"deleted": name})
    if args.action == "push":
        return await _push(s)
    found = await client.list_models(args.prefix, args.tag_filter, args.label)
    rows = [(m.name, m.latest_version, ",".join(m.tags), m.description[:40]) for m in found]
    return Output.of_list(found, table(rows, ["NAME", "LATEST", "TAGS", "DESCRIPTION"]))


async def _push(s: Session) -> Output:
    args = s.args
    profile = None
    if args.profile:
        profile = specs.read_message(args.profile, types_pb2.DataProfile())
    version = await s.client.push(
        args.model,
        args.file,
        description=args.description,
        author=args.author or os.environ.get("USER", ""),
        source=pb.Source(run_id=args.run_id, dataset=args.dataset, commit=args.commit),
        tags=args.tag or [],
        aliases=args.alias or [],
        data_profile=profile,  # type: ignore[arg-type]
        progress=s.bars(f"pushing {Path(args.file).name}"),
    )
    text = (
        f"{version.name} sha256:{version.artifact.sha256[:12]} "
        f"aliases={','.join(version.aliases) or '-'}"
    )
    return Output.of(version, text)


# --------------------------------------------------------------------------- versions


async def versions(s: Session) -> Output:
    args, client = s.args, s.client
    if args.action == "get":
        version = await client.resolve(args.reference)
        return Output.of(version, version_text(version))
    if args.action == "download":
        version = await client.download(
            args.reference, args.output, s.bars(f"downloading {args.reference}")
        )
        return Output.of(version, f"{version.name} → {args.output} (sha256 verified)")
    if args.action == "archive":
        version = await client.archive(args.reference)
        return Output.of(version, version_text(version))
    if args.action == "delete":
        await client.delete_version(args.reference)
        return Output(f"deleted {args.reference}", {"deleted": args.reference})
    if args.action in ("optimize", "report"):
        from modelhub.cli import derived

        return await (derived.optimize(s) if args.action == "optimize" else derived.report(s))
    found = await client.list_versions(args.model, alias=args.alias or "")
    rows = [
        (
            v.version,
            STATUS_NAMES.get(v.status, "?"),
            ",".join(v.aliases) or "-",
            v.artifact.sha256[:12],
            v.artifact.size_bytes,
            when(v.create_time),
        )
        for v in found
    ]
    header = ["VERSION", "STATUS", "ALIASES", "SHA256", "BYTES", "CREATED"]
    return Output.of_list(found, table(rows, header))


# ---------------------------------------------------------------------------- aliases


async def aliases(s: Session) -> Output:
    args, client = s.args, s.client
    if args.action == "set":
        alias = await client.set_alias(args.model, args.alias, args.version)
        return Output.of(alias, f"{alias.name} → version {alias.version}")
    if args.action == "delete":
        await client.delete_alias(args.model, args.alias)
        name = alias_name(bare_id(args.model), args.alias)
        model = qualified_name(args.model)
        return Output(f"deleted alias {args.alias} of {model}", {"deleted": name})
    found = await client.list_aliases(args.model)
    rows = [(a.alias, a.version, when(a.update_time)) for a in found]
    return Output.of_list(found, table(rows, ["ALIAS", "VERSION", "UPDATED"]))


# -------------------------------------------------------------------- deployments


def _spec_name(given: str | None, spec_name: str, collection: str) -> str:
    """The resource id to apply: the argument, else the file's `name`."""
    name = given or bare_id(spec_name, f"{collection}/")
    if not name:
        raise InvalidArgumentError(
            f"name the {collection[:-1]}: `modelhub {collection} apply NAME FILE` "
            f'(or put "name": "{collection}/NAME" in the file)',
            field="name",
        )
    return name


async def deployments(s: Session) -> Output:
    args, client = s.args, s.client
    if args.action == "example":
        return _example("deployment", s)
    if args.action == "apply":
        spec = specs.read_message(args.file, pb.Deployment())
        name = _spec_name(args.name, spec.name, "deployments")  # type: ignore[attr-defined]
        deployment = await client.apply_deployment(name, spec)  # type: ignore[arg-type]
        text = deployment_text(deployment)
        if args.wait:
            from modelhub.cli import fleet

            replicas = await fleet.wait_for_rollout(s, deployment)
            text += f"\n\n{fleet.rollout_done(deployment, replicas)}"
        return Output.of(deployment, text)
    if args.action == "get":
        deployment = await client.get_deployment(args.deployment)
        return Output.of(deployment, deployment_text(deployment))
    if args.action == "delete":
        await client.delete_deployment(args.deployment)
        name = qualified_name(args.deployment, DEPLOYMENTS)
        return Output(f"deleted {name}", {"deleted": name})
    items = await client.list_deployments()
    rows = [
        (
            bare_id(d.name, DEPLOYMENTS),
            bare_id(d.model),
            ",".join(_resolved(v) for v in d.versions),
            d.instance_count or 1,
            types_pb2.Device.Name(d.device or types_pb2.AUTO),
        )
        for d in items
    ]
    header = ["NAME", "MODEL", "VERSIONS", "INSTANCES", "DEVICE"]
    return Output.of_list(items, table(rows, header))


# ---------------------------------------------------------------------- endpoints


async def endpoints(s: Session) -> Output:
    args, client = s.args, s.client
    if args.action == "example":
        return _example("endpoint", s)
    if args.action == "apply":
        spec = specs.read_message(args.file, pb.Endpoint())
        name = _spec_name(args.name, spec.name, "endpoints")  # type: ignore[attr-defined]
        endpoint = await client.apply_endpoint(name, spec)  # type: ignore[arg-type]
        return Output.of(endpoint, endpoint_text(endpoint))
    if args.action == "get":
        endpoint = await client.get_endpoint(args.endpoint)
        return Output.of(endpoint, endpoint_text(endpoint))
    if args.action == "delete":
        await client.delete_endpoint(args.endpoint)
        name = qualified_name(args.endpoint, ENDPOINTS)
        return Output(f"deleted {name}", {"deleted": name})
    if args.action == "audit":
        redact = [n.strip() for value in args.redact or [] for n in value.split(",") if n.strip()]
        endpoint = await client.set_endpoint_audit(args.endpoint, args.sample_rate, redact)
        return Output.of(endpoint, f"{endpoint.name}: audit {audit_text(endpoint)}")
    items = await client.list_endpoints()
    rows = [
        (
            bare_id(e.name, ENDPOINTS),
            _variants_cell(e),
            " ".join(f"{sh.name}@{sh.sample_rate:g}" for sh in e.shadows) or "-",
            audit_text(e),
        )
        for e in items
    ]
    return Output.of_list(items, table(rows, ["NAME", "VARIANTS", "SHADOWS", "AUDIT"]))


def _example(kind_name: str, s: Session) -> Output:
    kind = specs.KINDS[kind_name]
    if s.args.schema:
        return Output(dumps(specs.schema(kind)))
    if s.args.json:
        return Output(specs.example(kind, annotated=False))
    return Output(specs.example(kind))


# -------------------------------------------------------------------------- watch

KIND_NAMES = {
    pb.MODEL: "model",
    pb.MODEL_VERSION: "version",
    pb.ALIAS: "alias",
    pb.DEPLOYMENT: "deployment",
    pb.ENDPOINT: "endpoint",
}
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}


def name_matches(pattern: str, name: str) -> bool:
    """`--name`: an id (`fraud`: models/fraud with its versions and aliases,
    deployments/fraud, endpoints/fraud), a full name (`models/fraud`: it and what is under
    it), shell wildcards in either (`fraud-*`)."""
    if not pattern:
        return True
    if "/" in pattern:
        return fnmatchcase(name, pattern) or name.startswith(pattern.rstrip("/") + "/")
    parts = name.split("/")
    return fnmatchcase(parts[1] if len(parts) > 1 else name, pattern)


def _created(event: pb.WatchEvent) -> bool | None:
    """Whether a PUT created the resource (None: the resource cannot tell)."""
    which = event.WhichOneof("resource")
    if which is None or which == "alias":
        return None
    resource = getattr(event, which)
    return bool(resource.create_time == resource.update_time)


def _details(event: pb.WatchEvent) -> str:
    which = event.WhichOneof("resource")
    if which == "version":
        v = event.version
        aliases = f" aliases={','.join(v.aliases)}" if v.aliases else ""
        return f"{STATUS_NAMES.get(v.status, '?')} sha256:{v.artifact.sha256[:12]}{aliases}"
    if which == "alias":
        return f"→ version {event.alias.version}"
    if which == "deployment":
        return ", ".join(f"{selector_text(v)}→{_resolved(v)}" for v in event.deployment.versions)
    if which == "endpoint":
        shadows = " ".join(f"{x.name}@{x.sample_rate:g}" for x in event.endpoint.shadows)
        return _variants_cell(event.endpoint) + (f" shadows {shadows}" if shadows else "")
    if which == "model":
        return f"latest {event.model.latest_version}" if event.model.latest_version else ""
    return ""


def change_text(event: pb.WatchEvent, synced: bool) -> str:
    """What happened, in words: `created`, `updated`, `deleted`, `exists` (the current
    state sent first), with what the resource is now."""
    if event.type == pb.WatchEvent.DELETE:
        return "deleted"
    if not synced:
        verb = "exists"
    else:
        created = _created(event)
        verb = "set" if created is None else "created" if created else "updated"
    details = _details(event)
    return f"{verb} {details}".rstrip()


WATCH_COLUMNS = (19, 6, 10, 36)


def watch_line(time: str, revision: object, kind: str, name: str, change: str) -> str:
    cells = (time, str(revision), kind, name)
    padded = "  ".join(c.ljust(w) for c, w in zip(cells, WATCH_COLUMNS, strict=True))
    return f"{padded}  {change}".rstrip()


async def watch(s: Session) -> Output:
    """Follow the change feed: one line per change (NDJSON with --json)."""
    args = s.args
    kinds = [KINDS_BY_NAME[k] for k in args.kind or []]
    synced = args.start_revision > 0  # a replay has no initial snapshot
    if not args.json:
        write(watch_line("TIME", "REV", "KIND", "NAME", "CHANGE"))
    async for event in s.client.watch(args.start_revision, kinds):
        marker = event.type in (pb.WatchEvent.SYNCED, pb.WatchEvent.PROGRESS)
        if not marker and not name_matches(args.name, event.name):
            continue
        if args.json:
            write(dumps_line(event))
        elif event.type == pb.WatchEvent.SYNCED:
            write(watch_line(now(), event.revision, "-", "-", "in sync: changes follow"))
        elif event.type != pb.WatchEvent.PROGRESS:
            kind = KIND_NAMES.get(event.kind, "?")
            write(watch_line(now(), event.revision, kind, event.name, change_text(event, synced)))
        synced = synced or event.type == pb.WatchEvent.SYNCED
    return Output("")


def dumps_line(event: pb.WatchEvent) -> str:
    """One NDJSON line."""
    return json.dumps(message_dict(event), ensure_ascii=False, separators=(",", ":"))
