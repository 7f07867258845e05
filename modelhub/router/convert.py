"""Protobuf ↔ router domain: registry watch events into `RegistryState` changes, routing
tables and counters into `modelhub.router.v1` messages, events into monitor messages, and
inference responses into numpy tensors (for shadow comparisons and drift samples)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.common.dtypes import OIP_TO_NUMPY, TYPED_CONTENTS_FIELD
from modelhub.router.backends import Backend, BackendPool
from modelhub.router.events import Event, Outcome, Sampler
from modelhub.router.routing import Explanation
from modelhub.router.stats import RouterCounters
from modelhub.router.table import (
    DeploymentSpec,
    EndpointRoute,
    EndpointSpec,
    KeySource,
    ModelRoute,
    RegistryState,
    RoutingTable,
    Selector,
    ShadowSpec,
    StickyKey,
    VariantRoute,
    VariantSpec,
)

# ---------------------------------------------------------------- registry → domain


def model_id(name: str) -> str:
    """`models/fraud`, `models/fraud/versions/3`, `models/fraud/aliases/x` → `fraud`."""
    parts = name.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "models" else ""


def selector_from_pb(msg: rpb.VersionSelector) -> Selector:
    which = msg.WhichOneof("selector")
    if which == "version":
        return Selector(version=msg.version)
    if which == "alias":
        return Selector(alias=msg.alias)
    return Selector()


_KEY_SOURCES = {
    rpb.StickyKey.METADATA: KeySource.METADATA,
    rpb.StickyKey.PARAMETER: KeySource.PARAMETER,
}


def endpoint_from_pb(msg: rpb.Endpoint) -> EndpointSpec:
    sticky = None
    if msg.HasField("sticky_key") and msg.sticky_key.name:
        source = _KEY_SOURCES.get(msg.sticky_key.source)
        if source is not None:
            # gRPC metadata keys are lowercase on the wire.
            name = msg.sticky_key.name
            sticky = StickyKey(source, name.lower() if source is KeySource.METADATA else name)
    return EndpointSpec(
        id=msg.name.removeprefix("endpoints/"),
        variants=tuple(
            VariantSpec(
                v.name, model_id(v.model), selector_from_pb(v.selector), v.weight, tuple(v.pool)
            )
            for v in msg.variants
        ),
        sticky_key=sticky,
        salt=msg.salt,
        shadows=tuple(
            ShadowSpec(
                s.name,
                model_id(s.model),
                selector_from_pb(s.selector),
                s.sample_rate,
                tuple(s.pool),
            )
            for s in msg.shadows
        ),
        fallback=msg.fallback,
    )


def deployment_from_pb(msg: rpb.Deployment) -> DeploymentSpec:
    return DeploymentSpec(
        id=msg.name.removeprefix("deployments/"),
        model=model_id(msg.model),
        selectors=tuple(selector_from_pb(s) for s in msg.versions) or (Selector(),),
    )


def apply_event(state: RegistryState, event: rpb.WatchEvent) -> bool:
    """Apply one PUT or DELETE to `state`; False for events that change nothing routed."""
    put = event.type == rpb.WatchEvent.PUT
    if event.type not in (rpb.WatchEvent.PUT, rpb.WatchEvent.DELETE):
        return False
    kind = event.kind
    if kind == rpb.MODEL:
        model = model_id(event.name)
        if put:
            state.put_model(model)
        else:
            state.delete_model(model)
    elif kind == rpb.MODEL_VERSION:
        model = model_id(event.name)
        number = int(event.name.rsplit("/", 1)[-1])
        if put:
            state.put_version(model, number, event.version.status == rpb.ModelVersion.READY)
        else:
            state.delete_version(model, number)
    elif kind == rpb.ALIAS:
        model = model_id(event.name)
        alias = event.name.rsplit("/", 1)[-1]
        if put:
            state.put_alias(model, alias, event.alias.version)
        else:
            state.delete_alias(model, alias)
    elif kind == rpb.ENDPOINT:
        if put:
            state.put_endpoint(endpoint_from_pb(event.endpoint))
        else:
            state.delete_endpoint(event.name.removeprefix("endpoints/"))
    elif kind == rpb.DEPLOYMENT:
        if put:
            state.put_deployment(deployment_from_pb(event.deployment))
        else:
            state.delete_deployment(event.name.removeprefix("deployments/"))
    else:
        return False
    return True


# ------------------------------------------------------------------- domain → router


def backends_to_pb(pool: BackendPool | None) -> list[pb.Backend]:
    if pool is None:
        return []
    return [backend_to_pb(b) for b in pool.backends]


def backend_to_pb(backend: Backend) -> pb.Backend:
    return pb.Backend(
        address=backend.address,
        healthy=backend.healthy,
        requests=backend.requests,
        failures=backend.failures,
        in_flight=backend.in_flight,
    )


def variant_to_pb(variant: VariantRoute) -> pb.VariantRoute:
    spec = variant.spec
    return pb.VariantRoute(
        name=spec.name,
        model=f"models/{spec.model}",
        version=variant.version,
        weight=spec.weight,
        lower=variant.range.lower,
        upper=variant.range.upper,
        backends=backends_to_pb(variant.target.pool if variant.target else None),
        selector=spec.selector.describe(),
        deployed=variant.deployed,
    )


def endpoint_to_pb(endpoint: EndpointRoute) -> pb.EndpointRoute:
    return pb.EndpointRoute(
        name=endpoint.name,
        sticky_key=endpoint.sticky_key.describe() if endpoint.sticky_key else "",
        variants=[variant_to_pb(v) for v in endpoint.variants],
        shadows=[
            pb.ShadowRoute(
                name=s.spec.name,
                model=f"models/{s.spec.model}",
                version=s.version,
                sample_rate=s.spec.sample_rate,
                backends=backends_to_pb(s.target.pool if s.target else None),
                selector=s.spec.selector.describe(),
            )
            for s in endpoint.shadows
        ],
        fallback=endpoint.fallback.spec.name if endpoint.fallback else "",
    )


def model_route_to_pb(route: ModelRoute) -> pb.ModelRoute:
    return pb.ModelRoute(
        name=f"models/{route.id}",
        default_version=route.default,
        default_selector=route.default_selector,
        ready_versions=sorted(route.ready, reverse=True),
    )


def table_to_pb(table: RoutingTable) -> pb.RoutingTable:
    return pb.RoutingTable(
        revision=table.revision,
        endpoints=[endpoint_to_pb(table.endpoints[k]) for k in sorted(table.endpoints)],
        models=[model_route_to_pb(table.models[k]) for k in sorted(table.models)],
        default_backends=backends_to_pb(table.default_pool),
        synced=table.synced,
    )


def explanation_to_pb(explanation: Explanation) -> pb.ExplainRouteResponse:
    endpoint = explanation.endpoint
    response = pb.ExplainRouteResponse(
        endpoint=endpoint.name,
        key=explanation.key,
        bucket=explanation.bucket,
        mirrored_to=explanation.mirrored_to,
        sticky_key=endpoint.sticky_key.describe() if endpoint.sticky_key else "",
        fallback=endpoint.fallback.spec.name if endpoint.fallback else "",
        explanation=explanation.text,
    )
    if explanation.variant is not None:
        response.variant.CopyFrom(variant_to_pb(explanation.variant))
    return response


def stats_to_pb(
    counters: RouterCounters,
    *,
    revision: int,
    events_sent: int,
    events_dropped: int,
    events_buffered: int,
    outcomes_dropped: int,
) -> pb.RouterStats:
    return pb.RouterStats(
        variants=[
            pb.VariantCounters(
                endpoint=c.endpoint,
                variant=c.variant,
                requests=c.requests,
                errors=c.errors,
                unkeyed=c.unkeyed,
                fallbacks=c.fallbacks,
                model=f"models/{c.model}" if c.model else "",
                retries=c.retries,
            )
            for c in counters.routes()
            # Plain model routes exist for every model; list those that saw traffic.
            if c.requests or c.endpoint
        ],
        shadows=[
            pb.ShadowCounters(
                endpoint=c.endpoint,
                shadow=c.shadow,
                sent=c.sent,
                dropped=c.dropped,
                failed=c.failed,
                compared=c.compared,
                mismatched=c.mismatched,
            )
            for c in counters.shadows()
        ],
        monitor_events_sent=events_sent,
        monitor_events_dropped=events_dropped,
        outcomes_attributed=counters.outcomes_attributed,
        outcomes_unattributed=counters.outcomes_unattributed,
        monitor_events_buffered=events_buffered,
        outcomes_dropped=outcomes_dropped,
        revision=revision,
        not_found=counters.not_found,
    )


# ------------------------------------------------------------------ domain → monitor


def _timestamp(epoch_s: float) -> Timestamp:
    # Split before scaling: epoch seconds × 1e9 exceeds a double's exact integers.
    seconds = int(epoch_s)
    return Timestamp(seconds=seconds, nanos=min(round((epoch_s - seconds) * 1e9), 999_999_999))


def _values(values: Iterable[tuple[str, float]]) -> list[mpb.FeatureValue]:
    return [mpb.FeatureValue(name=n, number=v) for n, v in values if math.isfinite(v)]


def event_to_pb(event: Event) -> mpb.InferenceEvent:
    return mpb.InferenceEvent(
        request_id=event.request_id,
        time=_timestamp(event.time),
        endpoint=event.endpoint,
        variant=event.variant,
        model=f"models/{event.model}",
        version=event.version,
        latency_seconds=max(event.latency_s, 0.0),
        status_code=event.status_code,
        key_hash=event.key_hash,
        rows=event.rows,
        features=_values(event.features),
        predictions=_values(event.predictions),
        shadows=[
            mpb.ShadowComparison(
                shadow=c.shadow,
                model=f"models/{c.model}",
                version=c.version,
                status_code=c.status_code,
                latency_seconds=max(c.latency_s, 0.0),
                max_abs_diff=c.max_abs_diff,
                argmax_agree=c.argmax_agree,
                has_argmax=c.has_argmax,
            )
            for c in event.shadows
        ],
        source="router",
        traceparent=event.traceparent,
    )


def events_to_pb(events: Sequence[Event]) -> mpb.IngestEventsRequest:
    return mpb.IngestEventsRequest(events=[event_to_pb(e) for e in events])


def outcomes_to_pb(outcomes: Sequence[Outcome]) -> mpb.RecordOutcomesRequest:
    return mpb.RecordOutcomesRequest(
        outcomes=[
            mpb.Outcome(
                request_id=o.request_id, value=o.value, kind=o.kind, time=_timestamp(o.time)
            )
            for o in outcomes
        ]
    )


# ------------------------------------------------------------------ tensors (numpy)

_TYPED_CONTENTS = {**TYPED_CONTENTS_FIELD, "BYTES": "bytes_contents"}


def _tensor(
    datatype: str, shape: Sequence[int], raw: bytes | None, contents: opb.InferTensorContents
) -> np.ndarray | None:
    dims = tuple(int(d) for d in shape)
    if datatype == "BYTES":
        if raw is not None:
            return np.array([raw], dtype=object)
        return np.array(list(contents.bytes_contents), dtype=object)
    dtype = OIP_TO_NUMPY.get(datatype)
    if dtype is None:
        return None
    if raw is not None:
        array = np.frombuffer(raw, dtype=dtype)
    else:
        field = _TYPED_CONTENTS.get(datatype)
        if field is None:
            return None
        array = np.asarray(getattr(contents, field), dtype=dtype)
    if array.size != math.prod(dims):
        return None
    return array.reshape(dims)


def response_tensors(data: bytes) -> dict[str, np.ndarray]:
    """The outputs of a serialized ModelInferResponse by name (raw or typed contents)."""
    response = opb.ModelInferResponse.FromString(data)
    raw = response.raw_output_contents
    tensors: dict[str, np.ndarray] = {}
    for i, output in enumerate(response.outputs):
        array = _tensor(
            output.datatype, output.shape, raw[i] if i < len(raw) else None, output.contents
        )
        if array is not None:
            tensors[output.name] = array
    return tensors


def _first_row(array: np.ndarray, prefix: str, limit: int) -> list[tuple[str, float]]:
    if array.dtype.kind not in "biuf" or array.size == 0:
        return []
    row = array[0] if array.ndim > 1 else array
    flat = np.asarray(row, dtype=np.float64).ravel()[:limit]
    return [(f"{prefix}[{i}]", float(v)) for i, v in enumerate(flat)]


def make_sampler(max_values: int) -> Sampler:
    """A sampler for `EventPipeline`: the first row of the first input (`input[i]`) and of
    the first output (`output[i]`), at most `max_values` each, and the request's rows."""

    def sample(
        request: bytes, response: bytes
    ) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
        parsed = opb.ModelInferRequest.FromString(request)
        features: list[tuple[str, float]] = []
        rows = 0
        if parsed.inputs:
            first = parsed.inputs[0]
            rows = int(first.shape[0]) if first.shape else 1
            raw = parsed.raw_input_contents
            array = _tensor(first.datatype, first.shape, raw[0] if raw else None, first.contents)
            if array is not None:
                features = _first_row(array, "input", max_values)
        predictions: list[tuple[str, float]] = []
        outputs = response_tensors(response)
        if outputs:
            predictions = _first_row(next(iter(outputs.values())), "output", max_values)
        return rows, features, predictions

    return sample
