"""Registry protobuf ↔ domain converters (the edge; the domain never sees protobuf)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.common import registry_view
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.registry_view import (
    batching_from_pb,
    device_from_pb,
    runtime_from_pb,
    selector_from_pb,
)
from modelhub.common.serving import BatchingConfig, Device, RuntimeConfig
from modelhub.registry import names
from modelhub.registry.resources import (
    Alias,
    AuditPolicy,
    Deployment,
    Derivation,
    Endpoint,
    EventType,
    KeySource,
    Kind,
    Model,
    ModelVersion,
    Shadow,
    Source,
    StickyKey,
    TensorSpec,
    Variant,
    VersionSelector,
    VersionStatus,
    WatchEvent,
)
from modelhub.registry.service import UploadRequest

# ------------------------------------------------------------------------------ basics


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def profile_to_dict(profile: types_pb2.DataProfile) -> dict[str, Any]:
    return json_format.MessageToDict(profile, preserving_proto_field_name=True)


def profile_from_dict(profile: dict[str, Any]) -> types_pb2.DataProfile:
    return json_format.ParseDict(profile, types_pb2.DataProfile())


def tensor_to_pb(spec: TensorSpec) -> types_pb2.TensorSpec:
    return types_pb2.TensorSpec(
        name=spec.name, datatype=spec.datatype, shape=spec.shape, dim_names=spec.dim_names
    )


def source_to_pb(source: Source) -> pb.Source:
    return pb.Source(
        run_id=source.run_id, dataset=source.dataset, commit=source.commit, uri=source.uri
    )


def source_from_pb(source: pb.Source) -> Source:
    return Source(
        run_id=source.run_id, dataset=source.dataset, commit=source.commit, uri=source.uri
    )


_STATUS_TO_PB = {
    VersionStatus.READY: pb.ModelVersion.READY,
    VersionStatus.ARCHIVED: pb.ModelVersion.ARCHIVED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}


def status_from_pb(value: pb.ModelVersion.Status) -> VersionStatus | None:
    return _STATUS_FROM_PB.get(value)


# From protobuf: the one view the services share (modelhub.common.registry_view).
_DEVICE_TO_PB = {device: value for value, device in registry_view.DEVICES.items()}


def device_to_pb(device: Device) -> int:
    return _DEVICE_TO_PB[device]


def batching_to_pb(cfg: BatchingConfig) -> types_pb2.BatchingConfig:
    return types_pb2.BatchingConfig(
        max_batch_size=cfg.max_batch_size,
        max_queue_delay_us=cfg.max_queue_delay_us,
        max_queue_size=cfg.max_queue_size,
        priority_levels=cfg.priority_levels,
        default_timeout_us=cfg.default_timeout_us,
    )


def runtime_to_pb(cfg: RuntimeConfig) -> types_pb2.RuntimeConfig:
    return types_pb2.RuntimeConfig(
        intra_op_threads=cfg.intra_op_threads,
        inter_op_threads=cfg.inter_op_threads,
        graph_optimization=cfg.graph_optimization,
    )


# ------------------------------------------------------------------------ field masks


def _populated(msg: Message, field: str) -> bool:
    descriptor = msg.DESCRIPTOR.fields_by_name[field]
    if descriptor.is_repeated:
        return len(getattr(msg, field)) > 0
    if descriptor.message_type is not None:
        return msg.HasField(field)
    return bool(getattr(msg, field))


def patch_from_mask(
    msg: Message,
    mask: FieldMask,
    updatable: dict[str, Callable[[Message], Any]],
    what: str,
) -> dict[str, Any]:
    """Domain values of the fields named by `mask` (AIP-134). An empty mask means every
    updatable field that is set in `msg`; `*` means every updatable field."""
    paths = list(mask.paths)
    if not paths:
        paths = [f for f in updatable if _populated(msg, f)]
    elif paths == ["*"]:
        paths = list(updatable)
    patch: dict[str, Any] = {}
    for path in paths:
        extract = updatable.get(path)
        if extract is None:
            raise InvalidArgumentError(
                f"update_mask path {path!r} cannot be updated on a {what}; updatable: "
                f"{', '.join(updatable)}",
                field="update_mask",
            )
        patch[path] = extract(msg)
    return patch


# ------------------------------------------------------------------------------ models


def model_to_pb(model: Model) -> pb.Model:
    return pb.Model(
        name=names.model_name(model.id),
        uid=model.uid,
        description=model.description,
        tags=model.tags,
        labels=model.labels,
        latest_version=model.latest_version,
        create_time=timestamp(model.create_time),
        update_time=timestamp(model.update_time),
        etag=model.etag,
    )


def model_from_pb(model_id: str, msg: pb.Model) -> Model:
    return Model(
        id=model_id,
        uid="",
        description=msg.description,
        tags=list(msg.tags),
        labels=dict(msg.labels),
    )


MODEL_UPDATABLE: dict[str, Callable[[Any], Any]] = {
    "description": lambda m: m.description,
    "tags": lambda m: list(m.tags),
    "labels": lambda m: dict(m.labels),
}

# ---------------------------------------------------------------------------- versions


def version_to_pb(version: ModelVersion) -> pb.ModelVersion:
    schema = version.schema
    msg = pb.ModelVersion(
        name=names.version_name(version.model, version.version),
        model=names.model_name(version.model),
        version=version.version,
        uid=version.uid,
        description=version.description,
        author=version.author,
        source=source_to_pb(version.source),
        metadata=version.metadata,
        tags=version.tags,
        status=_STATUS_TO_PB[version.status],
        artifact=pb.Artifact(
            sha256=version.artifact.sha256,
            size_bytes=version.artifact.size_bytes,
            format=version.artifact.format,
        ),
        schema=pb.ModelSchema(
            inputs=[tensor_to_pb(s) for s in schema.inputs],
            outputs=[tensor_to_pb(s) for s in schema.outputs],
            opsets=[pb.OperatorSet(domain=d, version=v) for d, v in schema.opsets],
            producer_name=schema.producer_name,
            producer_version=schema.producer_version,
            ir_version=schema.ir_version,
            graph_name=schema.graph_name,
        ),
        aliases=version.aliases,
        create_time=timestamp(version.create_time),
        update_time=timestamp(version.update_time),
        etag=version.etag,
    )
    if version.data_profile is not None:
        msg.data_profile.CopyFrom(profile_from_dict(version.data_profile))
    if version.derivation is not None:
        msg.derivation.CopyFrom(
            pb.Derivation(
                parent=version.derivation.parent,
                method=version.derivation.method,
                parent_sha256=version.derivation.parent_sha256,
            )
        )
    if version.evaluation is not None:
        msg.evaluation.CopyFrom(json_format.ParseDict(version.evaluation, pb.EvaluationReport()))
    return msg


def wants_full(view: int, default_full: bool) -> bool:
    if view == pb.FULL:
        return True
    if view == pb.BASIC:
        return False
    return default_full


def upload_from_pb(meta: pb.UploadMetadata) -> UploadRequest:
    return UploadRequest(
        model=names.model_id(meta.parent, "metadata.parent"),
        create_model=meta.create_model,
        description=meta.description,
        author=meta.author,
        source=source_from_pb(meta.source),
        metadata=dict(meta.metadata),
        tags=list(meta.tags),
        sha256=meta.sha256,
        size_bytes=meta.size_bytes,
        data_profile=profile_to_dict(meta.data_profile) if meta.HasField("data_profile") else None,
        aliases=list(meta.aliases),
        derivation=(
            Derivation(parent=meta.derivation.parent, method=meta.derivation.method)
            if meta.HasField("derivation")
            else None
        ),
        evaluation=(
            json_format.MessageToDict(meta.evaluation, preserving_proto_field_name=True)
            if meta.HasField("evaluation")
            else None
        ),
    )


def _status_value(msg: pb.ModelVersion) -> VersionStatus | None:
    return status_from_pb(msg.status)


VERSION_UPDATABLE: dict[str, Callable[[Any], Any]] = {
    "description": lambda v: v.description,
    "author": lambda v: v.author,
    "source": lambda v: source_from_pb(v.source),
    "metadata": lambda v: dict(v.metadata),
    "tags": lambda v: list(v.tags),
    "status": _status_value,
    "data_profile": lambda v: (
        profile_to_dict(v.data_profile) if v.HasField("data_profile") else None
    ),
}

# ----------------------------------------------------------------------------- aliases


def alias_to_pb(alias: Alias) -> pb.Alias:
    return pb.Alias(
        name=names.alias_name(alias.model, alias.alias),
        alias=alias.alias,
        version=alias.version,
        update_time=timestamp(alias.update_time),
    )


# ------------------------------------------------------------------- deployments, endpoints

# Selectors from protobuf: registry_view's (a resolved_version a client sends is not kept:
# the store resolves selectors itself when it reads a deployment or endpoint back).


def selector_to_pb(selector: VersionSelector) -> pb.VersionSelector:
    msg = pb.VersionSelector(resolved_version=selector.resolved_version)
    if selector.version is not None:
        msg.version = selector.version
    elif selector.alias is not None:
        msg.alias = selector.alias
    return msg


def _model_ref(value: str, field: str) -> str:
    return names.model_id(value, field)


def deployment_from_pb(deployment_id: str, msg: pb.Deployment) -> Deployment:
    return Deployment(
        id=deployment_id,
        model=_model_ref(msg.model, "deployment.model"),
        versions=[selector_from_pb(s) for s in msg.versions],
        instance_count=msg.instance_count,
        device=device_from_pb(msg.device),
        batching=batching_from_pb(msg.batching),
        runtime=runtime_from_pb(msg.runtime),
        labels=dict(msg.labels),
    )


def deployment_to_pb(dep: Deployment) -> pb.Deployment:
    return pb.Deployment(
        name=f"deployments/{dep.id}",
        uid=dep.uid,
        model=names.model_name(dep.model),
        versions=[selector_to_pb(s) for s in dep.versions],
        instance_count=dep.instance_count,
        device=device_to_pb(dep.device),  # type: ignore[arg-type]
        batching=batching_to_pb(dep.batching),
        runtime=runtime_to_pb(dep.runtime),
        labels=dep.labels,
        create_time=timestamp(dep.create_time),
        update_time=timestamp(dep.update_time),
        etag=dep.etag,
    )


DEPLOYMENT_UPDATABLE: dict[str, Callable[[Any], Any]] = {
    "versions": lambda d: [selector_from_pb(s) for s in d.versions],
    "instance_count": lambda d: d.instance_count,
    "device": lambda d: device_from_pb(d.device),
    "batching": lambda d: batching_from_pb(d.batching),
    "runtime": lambda d: runtime_from_pb(d.runtime),
    "labels": lambda d: dict(d.labels),
}

_KEY_SOURCE_FROM_PB = {
    pb.StickyKey.METADATA: KeySource.METADATA,
    pb.StickyKey.PARAMETER: KeySource.PARAMETER,
}
_KEY_SOURCE_TO_PB = {v: k for k, v in _KEY_SOURCE_FROM_PB.items()}


def sticky_key_from_pb(msg: pb.Endpoint) -> StickyKey | None:
    if not msg.HasField("sticky_key"):
        return None
    key = msg.sticky_key
    source = _KEY_SOURCE_FROM_PB.get(key.source)
    if source is None:
        if not key.name:
            return None
        raise InvalidArgumentError(
            "sticky_key.source must be METADATA or PARAMETER", field="endpoint.sticky_key.source"
        )
    return StickyKey(source=source, name=key.name)


def variant_from_pb(msg: pb.Variant, field: str) -> Variant:
    return Variant(
        name=msg.name,
        model=_model_ref(msg.model, f"{field}.model"),
        selector=selector_from_pb(msg.selector),
        weight=msg.weight,
        pool=list(msg.pool),
    )


def shadow_from_pb(msg: pb.Shadow, field: str) -> Shadow:
    return Shadow(
        name=msg.name,
        model=_model_ref(msg.model, f"{field}.model"),
        selector=selector_from_pb(msg.selector),
        sample_rate=msg.sample_rate,
        pool=list(msg.pool),
    )


def _variants(msg: pb.Endpoint) -> list[Variant]:
    return [variant_from_pb(v, f"endpoint.variants[{i}]") for i, v in enumerate(msg.variants)]


def _shadows(msg: pb.Endpoint) -> list[Shadow]:
    return [shadow_from_pb(s, f"endpoint.shadows[{i}]") for i, s in enumerate(msg.shadows)]


def audit_from_pb(msg: pb.Endpoint) -> AuditPolicy | None:
    if not msg.HasField("audit"):
        return None
    return AuditPolicy(
        sample_rate=msg.audit.sample_rate, redact_inputs=list(msg.audit.redact_inputs)
    )


def endpoint_from_pb(endpoint_id: str, msg: pb.Endpoint) -> Endpoint:
    return Endpoint(
        id=endpoint_id,
        description=msg.description,
        sticky_key=sticky_key_from_pb(msg),
        salt=msg.salt,
        variants=_variants(msg),
        shadows=_shadows(msg),
        fallback=msg.fallback,
        labels=dict(msg.labels),
        audit=audit_from_pb(msg),
    )


def endpoint_to_pb(ep: Endpoint) -> pb.Endpoint:
    msg = pb.Endpoint(
        name=f"endpoints/{ep.id}",
        uid=ep.uid,
        description=ep.description,
        salt=ep.salt,
        variants=[
            pb.Variant(
                name=v.name,
                model=names.model_name(v.model),
                selector=selector_to_pb(v.selector),
                weight=v.weight,
                pool=v.pool,
            )
            for v in ep.variants
        ],
        shadows=[
            pb.Shadow(
                name=s.name,
                model=names.model_name(s.model),
                selector=selector_to_pb(s.selector),
                sample_rate=s.sample_rate,
                pool=s.pool,
            )
            for s in ep.shadows
        ],
        fallback=ep.fallback,
        labels=ep.labels,
        create_time=timestamp(ep.create_time),
        update_time=timestamp(ep.update_time),
        etag=ep.etag,
    )
    if ep.sticky_key is not None:
        msg.sticky_key.CopyFrom(
            pb.StickyKey(
                source=_KEY_SOURCE_TO_PB[ep.sticky_key.source],
                name=ep.sticky_key.name,
            )
        )
    if ep.audit is not None:
        msg.audit.CopyFrom(
            pb.AuditPolicy(sample_rate=ep.audit.sample_rate, redact_inputs=ep.audit.redact_inputs)
        )
    return msg


ENDPOINT_UPDATABLE: dict[str, Callable[[Any], Any]] = {
    "description": lambda e: e.description,
    "sticky_key": sticky_key_from_pb,
    "salt": lambda e: e.salt,
    "variants": _variants,
    "shadows": _shadows,
    "fallback": lambda e: e.fallback,
    "labels": lambda e: dict(e.labels),
    "audit": audit_from_pb,
}

# ------------------------------------------------------------------------------- watch

_KIND_TO_PB = {
    Kind.MODEL: pb.MODEL,
    Kind.MODEL_VERSION: pb.MODEL_VERSION,
    Kind.ALIAS: pb.ALIAS,
    Kind.DEPLOYMENT: pb.DEPLOYMENT,
    Kind.ENDPOINT: pb.ENDPOINT,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_TYPE_TO_PB = {
    EventType.PUT: pb.WatchEvent.PUT,
    EventType.DELETE: pb.WatchEvent.DELETE,
    EventType.SYNCED: pb.WatchEvent.SYNCED,
    EventType.PROGRESS: pb.WatchEvent.PROGRESS,
}


def kinds_from_pb(values: list[int]) -> set[Kind]:
    kinds: set[Kind] = set()
    for value in values:
        kind = _KIND_FROM_PB.get(value)  # type: ignore[call-overload]
        if kind is None:
            raise InvalidArgumentError(f"unknown resource kind {value}", field="kinds")
        kinds.add(kind)
    return kinds


def event_to_pb(event: WatchEvent) -> pb.WatchEvent:
    msg = pb.WatchEvent(
        type=_TYPE_TO_PB[event.type],
        revision=event.revision,
        name=event.name,
    )
    if event.kind is not None:
        msg.kind = _KIND_TO_PB[event.kind]
    resource = event.resource
    if isinstance(resource, Model):
        msg.model.CopyFrom(model_to_pb(resource))
    elif isinstance(resource, ModelVersion):
        msg.version.CopyFrom(version_to_pb(resource))
    elif isinstance(resource, Alias):
        msg.alias.CopyFrom(alias_to_pb(resource))
    elif isinstance(resource, Deployment):
        msg.deployment.CopyFrom(deployment_to_pb(resource))
    elif isinstance(resource, Endpoint):
        msg.endpoint.CopyFrom(endpoint_to_pb(resource))
    return msg
