"""The registry's protobuf messages → the typed contract (`modelhub.common.contract`).

One set of conversions for every service that reads the registry (router, inference,
monitor, the CLI), parsing names with the registry's rules (`modelhub.common.names`): a
name the registry would refuse raises `InvalidArgumentError` here too, never becomes a
half-parsed id. Protobuf only, no grpc.
"""

from __future__ import annotations

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common import names
from modelhub.common.contract import (
    BatchingConfig,
    DeploymentSpec,
    Device,
    EndpointAudit,
    EndpointSpec,
    EventType,
    KeySource,
    ModelSchema,
    ResourceKind,
    RuntimeConfig,
    ShadowSpec,
    StickyKey,
    TensorSpec,
    VariantSpec,
    VersionInfo,
    VersionSelector,
    WatchEvent,
)

DEVICES: dict[int, Device] = {
    types_pb2.AUTO: Device.AUTO,
    types_pb2.CPU: Device.CPU,
    types_pb2.GPU: Device.GPU,
}
_KEY_SOURCES = {
    rpb.StickyKey.METADATA: KeySource.METADATA,
    rpb.StickyKey.PARAMETER: KeySource.PARAMETER,
}
_EVENT_TYPES = {
    rpb.WatchEvent.PUT: EventType.PUT,
    rpb.WatchEvent.DELETE: EventType.DELETE,
    rpb.WatchEvent.SYNCED: EventType.SYNCED,
    rpb.WatchEvent.PROGRESS: EventType.PROGRESS,
}
_KINDS = {
    rpb.MODEL: ResourceKind.MODEL,
    rpb.MODEL_VERSION: ResourceKind.MODEL_VERSION,
    rpb.ALIAS: ResourceKind.ALIAS,
    rpb.DEPLOYMENT: ResourceKind.DEPLOYMENT,
    rpb.ENDPOINT: ResourceKind.ENDPOINT,
}
KINDS_TO_PB = {kind: value for value, kind in _KINDS.items()}


def device_from_pb(value: int) -> Device:
    return DEVICES.get(value, Device.AUTO)


def batching_from_pb(msg: types_pb2.BatchingConfig) -> BatchingConfig:
    return BatchingConfig(
        max_batch_size=msg.max_batch_size,
        max_queue_delay_us=msg.max_queue_delay_us,
        max_queue_size=msg.max_queue_size,
        priority_levels=msg.priority_levels,
        default_timeout_us=msg.default_timeout_us,
    )


def runtime_from_pb(msg: types_pb2.RuntimeConfig) -> RuntimeConfig:
    return RuntimeConfig(
        intra_op_threads=msg.intra_op_threads,
        inter_op_threads=msg.inter_op_threads,
        graph_optimization=msg.graph_optimization,
    )


def selector_from_pb(msg: rpb.VersionSelector) -> VersionSelector:
    which = msg.WhichOneof("selector")
    resolved = int(msg.resolved_version)
    if which == "version":
        return VersionSelector(version=int(msg.version), resolved_version=resolved)
    if which == "alias":
        return VersionSelector(alias=msg.alias, resolved_version=resolved)
    return VersionSelector(resolved_version=resolved)


def tensor_from_pb(msg: types_pb2.TensorSpec) -> TensorSpec:
    return TensorSpec(msg.name, msg.datatype, tuple(msg.shape), tuple(msg.dim_names))


def schema_from_pb(msg: rpb.ModelSchema) -> ModelSchema:
    return ModelSchema(
        inputs=tuple(tensor_from_pb(t) for t in msg.inputs),
        outputs=tuple(tensor_from_pb(t) for t in msg.outputs),
        opsets=tuple((o.domain, int(o.version)) for o in msg.opsets),
        producer_name=msg.producer_name,
        producer_version=msg.producer_version,
        ir_version=int(msg.ir_version),
        graph_name=msg.graph_name,
    )


def version_from_pb(
    msg: rpb.ModelVersion, field: str = "version", *, ref: names.VersionRef | None = None
) -> VersionInfo:
    """A ModelVersion (any view); its model and number from `ref` when given (a watch
    event's name), else from its `model` or name."""
    if ref is not None:
        model, number = ref.model, ref.version or int(msg.version)
    elif msg.model:
        model, number = names.model_id(msg.model, f"{field}.model"), int(msg.version)
    else:
        model, number = names.model_of(msg.name, f"{field}.name"), int(msg.version)
    return VersionInfo(
        model=model,
        version=number,
        sha256=msg.artifact.sha256,
        size_bytes=int(msg.artifact.size_bytes),
        schema=schema_from_pb(msg.schema) if msg.HasField("schema") else None,
        aliases=tuple(msg.aliases),
        ready=msg.status == rpb.ModelVersion.READY,
    )


def deployment_from_pb(msg: rpb.Deployment, field: str = "deployment") -> DeploymentSpec:
    return DeploymentSpec(
        id=names.deployment_id(msg.name, f"{field}.name"),
        model=names.model_id(msg.model, f"{field}.model"),
        selectors=tuple(selector_from_pb(s) for s in msg.versions) or (VersionSelector(),),
        instance_count=int(msg.instance_count),
        device=device_from_pb(msg.device),
        batching=batching_from_pb(msg.batching),
        runtime=runtime_from_pb(msg.runtime),
    )


def sticky_key_from_pb(msg: rpb.Endpoint) -> StickyKey | None:
    """The endpoint's key; None without one (no name, or a source this build does not
    know: requests then go to a random variant). Metadata keys are lowercase on the wire."""
    if not msg.HasField("sticky_key") or not msg.sticky_key.name:
        return None
    source = _KEY_SOURCES.get(msg.sticky_key.source)
    if source is None:
        return None
    name = msg.sticky_key.name
    return StickyKey(source, name.lower() if source is KeySource.METADATA else name)


def _variant(msg: rpb.Variant, field: str) -> VariantSpec:
    return VariantSpec(
        msg.name,
        names.model_id(msg.model, f"{field}.model"),
        selector_from_pb(msg.selector),
        msg.weight,
        tuple(msg.pool),
    )


def _shadow(msg: rpb.Shadow, field: str) -> ShadowSpec:
    return ShadowSpec(
        msg.name,
        names.model_id(msg.model, f"{field}.model"),
        selector_from_pb(msg.selector),
        msg.sample_rate,
        tuple(msg.pool),
    )


def endpoint_from_pb(msg: rpb.Endpoint, field: str = "endpoint") -> EndpointSpec:
    audit = None
    if msg.HasField("audit"):
        audit = EndpointAudit(msg.audit.sample_rate, tuple(msg.audit.redact_inputs))
    return EndpointSpec(
        id=names.endpoint_id(msg.name, f"{field}.name"),
        variants=tuple(_variant(v, f"{field}.variants[{i}]") for i, v in enumerate(msg.variants)),
        sticky_key=sticky_key_from_pb(msg),
        salt=msg.salt,
        shadows=tuple(_shadow(s, f"{field}.shadows[{i}]") for i, s in enumerate(msg.shadows)),
        fallback=msg.fallback,
        audit=audit,
    )


def _model_event(msg: rpb.WatchEvent, base: WatchEvent) -> WatchEvent:
    return WatchEvent(base.type, base.revision, base.kind, msg.name, names.model_id(msg.name))


def _version_event(msg: rpb.WatchEvent, base: WatchEvent) -> WatchEvent:
    ref = names.parse_version_name(msg.name)
    version = None
    if base.type is EventType.PUT and msg.HasField("version"):
        version = version_from_pb(msg.version, ref=ref)
    return WatchEvent(
        base.type,
        base.revision,
        base.kind,
        msg.name,
        ref.model,
        version=version,
        number=ref.version or 0,
    )


def _alias_event(msg: rpb.WatchEvent, base: WatchEvent) -> WatchEvent:
    model, alias = names.parse_alias_name(msg.name)
    number = int(msg.alias.version) if msg.HasField("alias") else 0
    return WatchEvent(
        base.type, base.revision, base.kind, msg.name, model, number=number, alias=alias
    )


def _deployment_event(msg: rpb.WatchEvent, base: WatchEvent) -> WatchEvent:
    names.deployment_id(msg.name)
    if base.type is EventType.PUT and msg.HasField("deployment"):
        spec = deployment_from_pb(msg.deployment)
        return WatchEvent(
            base.type, base.revision, base.kind, msg.name, spec.model, deployment=spec
        )
    # A DELETE names what went; its last state is read for its model only, leniently: a
    # delete must never be skipped over the resource it carries.
    model = names.id_in(msg.deployment.model, names.MODELS) or ""
    return WatchEvent(base.type, base.revision, base.kind, msg.name, model)


def _endpoint_event(msg: rpb.WatchEvent, base: WatchEvent) -> WatchEvent:
    names.endpoint_id(msg.name)
    spec = None
    if base.type is EventType.PUT and msg.HasField("endpoint"):
        spec = endpoint_from_pb(msg.endpoint)
    return WatchEvent(base.type, base.revision, base.kind, msg.name, endpoint=spec)


_PARSERS = {
    ResourceKind.MODEL: _model_event,
    ResourceKind.MODEL_VERSION: _version_event,
    ResourceKind.ALIAS: _alias_event,
    ResourceKind.DEPLOYMENT: _deployment_event,
    ResourceKind.ENDPOINT: _endpoint_event,
}


def event_from_pb(msg: rpb.WatchEvent) -> WatchEvent:
    """One Watch event. Types and kinds this build does not know become PROGRESS and
    OTHER (their revision still counts); a malformed name raises InvalidArgumentError."""
    event_type = _EVENT_TYPES.get(msg.type, EventType.PROGRESS)
    kind = _KINDS.get(msg.kind, ResourceKind.OTHER)
    base = WatchEvent(event_type, int(msg.revision), kind, msg.name)
    if event_type in (EventType.SYNCED, EventType.PROGRESS):
        return base
    parse = _PARSERS.get(kind)
    return parse(msg, base) if parse is not None else base
