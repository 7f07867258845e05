"""Protobuf ↔ domain conversions for the inference APIs (the only place, with the
servicers, that knows the wire types)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.common.v1 import types_pb2
from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import model_config_pb2 as mpb
from modelhub.common.dtypes import TYPED_CONTENTS_FIELD
from modelhub.common.errors import InvalidArgumentError, PayloadTooLargeError
from modelhub.common.registry_view import batching_from_pb, device_from_pb, runtime_from_pb
from modelhub.common.timestamps import timestamp_of
from modelhub.inference.codec import (
    BYTES,
    bytes_payload_size,
    decode_raw,
    decode_typed,
    dtype_of,
    encode_bytes_raw,
    min_element_bytes,
)
from modelhub.inference.repository import IndexEntry, ServedVersion, VersionState
from modelhub.inference.request import InferRequest, InferResult, InputTensor
from modelhub.inference.service import ModelConfiguration, ModelDescription
from modelhub.inference.spec import (
    BatchingPolicy,
    Device,
    LoadOverrides,
    TensorSpec,
)
from modelhub.inference.stats import Duration, VersionStats

# The typed-contents field of each datatype (FP16 and BF16 have none).
TYPED_FIELD = TYPED_CONTENTS_FIELD
# The most dimensions a tensor may have (numpy's limit, NPY_MAXDIMS).
MAX_DIMS = 64

_OutputTensor = pb.ModelInferResponse.InferOutputTensor
# Response parameters that name what served a request.
_SERVED_PREFIX = "modelhub."


def _int_parameter(value: pb.InferParameter, name: str) -> int:
    kind = value.WhichOneof("parameter_choice")
    if kind in ("int64_param", "uint64_param"):
        return int(getattr(value, kind))
    raise InvalidArgumentError(
        f"parameter {name!r} must be an integer, not {kind}", field=f"parameters[{name}]"
    )


def infer_request(request: pb.ModelInferRequest, max_request_bytes: int) -> InferRequest:
    """Decode a ModelInferRequest (raw or typed contents) into domain tensors."""
    if not request.model_name:
        raise InvalidArgumentError("model_name is required", field="model_name")
    tensors = request.inputs
    if not tensors:
        raise InvalidArgumentError("the request has no inputs", field="inputs")
    raws = list(request.raw_input_contents)  # one bytes object each: frombuffer views them
    if raws:
        inputs = _raw_inputs(tensors, raws, max_request_bytes)
    else:
        inputs = _typed_inputs(tensors, max_request_bytes)
    parameters = request.parameters
    priority, timeout_s = _request_parameters(parameters) if len(parameters) else (0, None)
    return InferRequest(
        model=request.model_name,
        version=request.model_version,
        inputs=inputs,
        outputs=[o.name for o in request.outputs] if len(request.outputs) else [],
        priority=priority,
        timeout_s=timeout_s,
    )


def _raw_inputs(
    tensors: Sequence[pb.ModelInferRequest.InferInputTensor],
    raws: list[bytes],
    max_request_bytes: int,
) -> list[InputTensor]:
    """The inputs of a request whose data is in `raw_input_contents` (one entry each)."""
    if len(raws) != len(tensors):
        raise InvalidArgumentError(
            f"raw_input_contents has {len(raws)} entries for {len(tensors)} inputs; send "
            "one per input, in the order of `inputs`",
            field="raw_input_contents",
        )
    size = sum(map(len, raws))
    if size > max_request_bytes:
        raise _too_large(size, max_request_bytes)
    inputs: list[InputTensor] = []
    for index, raw in enumerate(raws):
        tensor = tensors[index]
        if tensor.HasField("contents") and tensor.contents.ByteSize():
            raise InvalidArgumentError(
                f"inputs[{index}] carries typed contents and the request carries "
                "raw_input_contents: the protocol allows one or the other, not both; send "
                "every input's data either in raw_input_contents or in its contents",
                field=f"inputs[{index}].contents",
            )
        datatype = tensor.datatype
        # BYTES: every element takes at least its length prefix.
        itemsize = min_element_bytes(datatype, f"inputs[{index}].datatype")
        shape = checked_shape(tensor.shape, itemsize, max_request_bytes, f"inputs[{index}]")
        data = decode_raw(raw, datatype, shape, index)
        inputs.append(InputTensor(tensor.name, datatype, shape, data))
    return inputs


def _typed_inputs(
    tensors: Sequence[pb.ModelInferRequest.InferInputTensor], max_request_bytes: int
) -> list[InputTensor]:
    """The inputs of a request whose data is in each input's typed `contents`."""
    inputs: list[InputTensor] = []
    size = 0
    for index, tensor in enumerate(tensors):
        field = f"inputs[{index}]"
        dtype = dtype_of(tensor.datatype, f"{field}.datatype")
        contents = TYPED_FIELD.get(tensor.datatype)
        if contents is None:
            raise InvalidArgumentError(
                f"{tensor.datatype} data can only be sent as raw_input_contents",
                field=f"{field}.contents",
            )
        values = getattr(tensor.contents, contents)
        if tensor.datatype == BYTES:
            # Counted as their raw encoding would be: bytes plus a length prefix each
            # (not the 8 bytes of an object pointer).
            size += bytes_payload_size(values)
            itemsize = min_element_bytes(BYTES, field)
        else:
            size += len(values) * dtype.itemsize
            itemsize = dtype.itemsize
        if size > max_request_bytes:
            raise _too_large(size, max_request_bytes)
        shape = checked_shape(tensor.shape, itemsize, max_request_bytes, field)
        data = decode_typed(values, tensor.datatype, shape, field)
        inputs.append(InputTensor(tensor.name, tensor.datatype, shape, data))
    return inputs


def _request_parameters(parameters: Mapping[str, pb.InferParameter]) -> tuple[int, float | None]:
    """The priority and timeout (seconds; None: none) a request's parameters ask for."""
    priority = 0
    timeout_s = None
    if "priority" in parameters:
        priority = _int_parameter(parameters["priority"], "priority")
    if "timeout" in parameters:  # microseconds, as tritonclient sends it
        timeout_us = _int_parameter(parameters["timeout"], "timeout")
        timeout_s = timeout_us / 1e6 if timeout_us > 0 else None
    return priority, timeout_s


def checked_shape(
    dims: Sequence[int], itemsize: int, max_request_bytes: int, field: str
) -> tuple[int, ...]:
    """`dims` as a shape numpy can build, or INVALID_ARGUMENT on `field`.shape.

    Checked with Python integers, before any array exists: every dimension concrete (>= 0;
    -1 only means "variable" in model metadata), at most `MAX_DIMS` of them, and the shape
    no larger than a request can carry — counting its non-zero dimensions only, so that an
    empty tensor cannot declare `[0, 2**62]` (numpy refuses such a shape even with no data).
    """
    shape = tuple(dims)
    if len(shape) > MAX_DIMS:
        raise InvalidArgumentError(
            f"shape of {field} has {len(shape)} dimensions; at most {MAX_DIMS} are supported",
            field=f"{field}.shape",
        )
    extent = 1
    for dim in shape:
        if dim < 0:
            raise InvalidArgumentError(
                f"shape {list(shape)} of {field} has a negative dimension; inference requests "
                "carry concrete sizes (-1 only marks a variable dimension in model metadata)",
                field=f"{field}.shape",
            )
        if dim:
            extent *= dim
    if extent * itemsize > max_request_bytes:
        raise InvalidArgumentError(
            f"shape {list(shape)} of {field} describes more data than a request may carry "
            f"({extent} elements of {itemsize} bytes, without its zero dimensions; the limit "
            f"of tensor data is {max_request_bytes} bytes)",
            field=f"{field}.shape",
        )
    return shape


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request carries {size} bytes of tensor data; the limit is {limit}",
        metadata={"size_bytes": str(size), "limit_bytes": str(limit)},
    )


def infer_response(
    request: pb.ModelInferRequest,
    result: InferResult,
    served: Sequence[tuple[str, str]] = (),
) -> pb.ModelInferResponse:
    """The answer, with the request's id and parameters echoed, and the `served` string
    parameters (`modelhub.endpoint`, `modelhub.variant`, `modelhub.model`,
    `modelhub.version`) set once each: a request's own `modelhub.*` parameters are not
    echoed, so that they can never be mistaken for what served it.

    Outputs go in raw_output_contents (what tritonclient reads, and the fast path), except
    for requests that sent their inputs as typed contents — JSON clients through Envoy's
    transcoder, grpcurl — which get typed contents back: numbers, not base64 bytes. Outputs
    with a datatype that has no typed field (FP16) keep the answer raw. BYTES outputs are
    length-prefixed in raw contents, `bytes_contents` in typed ones.
    """
    outputs = result.outputs
    typed = not request.raw_input_contents and all(o.datatype in TYPED_FIELD for o in outputs)
    response = pb.ModelInferResponse(
        model_name=result.model,
        model_version=str(result.version),
        id=request.id,
        outputs=[
            _OutputTensor(name=o.name, datatype=o.datatype, shape=o.data.shape) for o in outputs
        ],
    )
    if typed:
        for tensor, output in zip(response.outputs, outputs, strict=True):
            getattr(tensor.contents, TYPED_FIELD[output.datatype]).extend(
                output.data.ravel().tolist()
            )
    else:
        response.raw_output_contents.extend(
            encode_bytes_raw(o.data) if o.datatype == BYTES else o.data.tobytes() for o in outputs
        )
    parameters = response.parameters
    if request.parameters:
        parameters.MergeFrom(request.parameters)
        for name in [n for n in parameters if n.startswith(_SERVED_PREFIX)]:
            del parameters[name]
    for name, value in served:
        parameters[name].string_param = value
    return response


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=spec.shape
    )


def model_metadata(description: ModelDescription) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=description.name,
        versions=description.versions,
        platform=description.platform,
        inputs=[_tensor_metadata(t) for t in description.schema.inputs],
        outputs=[_tensor_metadata(t) for t in description.schema.outputs],
    )


# ---------------------------------------------------------------------- repository API

_STATES = {
    VersionState.UNAVAILABLE: ipb.UNAVAILABLE,
    VersionState.LOADING: ipb.LOADING,
    VersionState.READY: ipb.READY,
    VersionState.UNLOADING: ipb.UNLOADING,
    VersionState.FAILED: ipb.FAILED,
}


def load_overrides(request: ipb.LoadModelRequest) -> LoadOverrides:
    """A LoadModel request's settings, read like a deployment's (the registry contract's
    batching, runtime and device)."""
    return LoadOverrides.of(
        batching_from_pb(request.batching),
        runtime_from_pb(request.runtime),
        request.instance_count,
        device_from_pb(request.device),
    )


def batching_config(policy: BatchingPolicy) -> types_pb2.BatchingConfig:
    return types_pb2.BatchingConfig(
        max_batch_size=policy.max_batch_size,
        max_queue_delay_us=round(policy.max_queue_delay_s * 1e6),
        max_queue_size=policy.max_queue_size,
        priority_levels=policy.priority_levels,
        default_timeout_us=round(policy.default_timeout_s * 1e6),
    )


def index_entry(entry: IndexEntry) -> ipb.ModelIndexEntry:
    return ipb.ModelIndexEntry(
        name=entry.model,
        version=str(entry.version),
        state=_STATES[entry.state],
        reason=entry.reason,
        execution_provider=entry.provider,
        instance_count=entry.instance_count,
        memory_bytes=entry.memory_bytes,
        pinned=entry.pinned,
        last_used_time=timestamp_of(entry.last_used) if entry.last_used > 0 else None,
        batching=batching_config(entry.batching) if entry.batching is not None else None,
    )


def _duration(value: Duration) -> ipb.StatisticDuration:
    return ipb.StatisticDuration(count=value.count, ns=value.ns)


def model_statistics(served: ServedVersion) -> ipb.ModelStatistics:
    stats = served.telemetry.stats
    last = None
    if stats.last_inference_ns:
        last = Timestamp()
        last.FromNanoseconds(stats.last_inference_ns)
    return ipb.ModelStatistics(
        name=served.info.model,
        version=str(served.info.version),
        last_inference_time=last,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=ipb.InferStatistics(**_phases(stats, _duration)),
        batch_stats=[
            ipb.BatchStatistics(batch_size=size, compute_infer=_duration(d))
            for size, d in sorted(stats.batches.items())
        ],
        rejected_count=stats.rejected_count,
        expired_count=stats.expired_count,
        queue_depth=max(0, served.batcher.depth),
    )


# ---------------------------------------------------------------------- Triton's shapes
# (the repository, statistics and configuration RPCs of inference.GRPCInferenceService)

# Triton's index states: ModelHub's failed versions are UNAVAILABLE (with their reason).
_TRITON_STATES = {
    VersionState.UNAVAILABLE: "UNAVAILABLE",
    VersionState.LOADING: "LOADING",
    VersionState.READY: "READY",
    VersionState.UNLOADING: "UNLOADING",
    VersionState.FAILED: "UNAVAILABLE",
}

_TRITON_KINDS = {
    Device.AUTO: mpb.ModelInstanceGroup.KIND_AUTO,
    Device.CPU: mpb.ModelInstanceGroup.KIND_CPU,
    Device.GPU: mpb.ModelInstanceGroup.KIND_GPU,
}


def triton_index_entry(entry: IndexEntry) -> pb.RepositoryIndexResponse.ModelIndex:
    return pb.RepositoryIndexResponse.ModelIndex(
        name=entry.model,
        version=str(entry.version),
        state=_TRITON_STATES[entry.state],
        reason=entry.reason,
    )


def _triton_duration(value: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=value.count, ns=value.ns)


_PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _phases(stats: VersionStats, duration: Callable[[Duration], Any]) -> dict[str, Any]:
    """The per-phase durations of `stats` as `duration` messages (ModelHub's or Triton's
    shape: the same fields)."""
    return {phase: duration(getattr(stats, phase)) for phase in _PHASES}


def triton_statistics(served: ServedVersion) -> pb.ModelStatistics:
    stats = served.telemetry.stats
    return pb.ModelStatistics(
        name=served.info.model,
        version=str(served.info.version),
        last_inference=stats.last_inference_ns // 1_000_000,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(**_phases(stats, _triton_duration)),
        batch_stats=[
            pb.InferBatchStatistics(batch_size=size, compute_infer=_triton_duration(d))
            for size, d in sorted(stats.batches.items())
        ],
    )


def triton_data_type(datatype: str) -> str:
    """The name of Triton's config enum value for an Open Inference Protocol datatype
    (TYPE_INVALID if unknown)."""
    name = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    return name if name in mpb.DataType.DESCRIPTOR.values_by_name else "TYPE_INVALID"


def _config_dims(spec: TensorSpec, batched: bool) -> list[int]:
    # Triton's config dims leave out the batch dimension of batchable models.
    return list(spec.shape[1:] if batched else spec.shape)


def model_config(config: ModelConfiguration) -> pb.ModelConfigResponse:
    batched = config.max_batch_size > 0
    batching = config.options.batching
    runtime = config.options.runtime
    dynamic = None
    if batched:
        dynamic = mpb.ModelDynamicBatching(
            max_queue_delay_microseconds=round(batching.max_queue_delay_s * 1e6),
            priority_levels=batching.priority_levels,
            default_queue_policy=mpb.ModelQueuePolicy(
                timeout_action=mpb.ModelQueuePolicy.REJECT,
                default_timeout_microseconds=round(batching.default_timeout_s * 1e6),
                allow_timeout_override=True,
                max_queue_size=batching.max_queue_size,
            ),
        )
    return pb.ModelConfigResponse(
        config=mpb.ModelConfig(
            name=config.name,
            platform=config.platform,
            backend="onnxruntime",
            max_batch_size=config.max_batch_size,
            input=[
                mpb.ModelInput(
                    name=t.name,
                    data_type=triton_data_type(t.datatype),
                    dims=_config_dims(t, batched),
                )
                for t in config.schema.inputs
            ],
            output=[
                mpb.ModelOutput(
                    name=t.name,
                    data_type=triton_data_type(t.datatype),
                    dims=_config_dims(t, batched),
                )
                for t in config.schema.outputs
            ],
            instance_group=[
                mpb.ModelInstanceGroup(
                    name=config.name,
                    count=runtime.instance_count,
                    kind=_TRITON_KINDS[config.device],
                )
            ],
            dynamic_batching=dynamic,
        )
    )
