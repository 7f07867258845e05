"""Decoding ModelInferRequests (raw and typed contents) and encoding responses."""

from __future__ import annotations

import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.dtypes import OIP_TO_NUMPY
from modelhub.common.errors import InvalidArgumentError, PayloadTooLargeError
from modelhub.inference.convert import TYPED_FIELD, infer_request, infer_response
from modelhub.inference.request import InferResult, OutputTensor

DATATYPES = ["FP32", "FP16", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL"]


def _sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    dtype = OIP_TO_NUMPY[datatype]
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _raw_request(array: np.ndarray, datatype: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=array.shape)
    request.raw_input_contents.append(array.tobytes())
    return request


@pytest.mark.parametrize("datatype", DATATYPES)
def test_raw_contents_decode_without_copy(datatype: str) -> None:
    array = _sample(datatype, (3, 4))
    request = _raw_request(array, datatype)
    decoded = infer_request(request, 1 << 20).inputs[0]
    assert decoded.shape == (3, 4)
    assert decoded.data.dtype == OIP_TO_NUMPY[datatype]
    np.testing.assert_array_equal(decoded.data, array)
    assert not decoded.data.flags.owndata  # a view over the message bytes


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "FP16"])
def test_typed_contents_decode(datatype: str) -> None:
    array = _sample(datatype, (2, 3))
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=array.shape)
    getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.ravel().tolist())
    decoded = infer_request(request, 1 << 20).inputs[0]
    np.testing.assert_array_equal(decoded.data, array)
    assert decoded.data.dtype == OIP_TO_NUMPY[datatype]


def test_byte_length_must_match_the_shape() -> None:
    request = _raw_request(np.zeros((2, 3), np.float32), "FP32")
    request.inputs[0].shape[:] = [2, 4]
    with pytest.raises(InvalidArgumentError, match="needs 32") as err:
        infer_request(request, 1 << 20)
    assert err.value.violations[0].field == "inputs[0]"


def test_value_count_must_match_the_shape_for_typed_contents() -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="INT32", shape=[2, 2])
    tensor.contents.int_contents.extend([1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="needs 4"):
        infer_request(request, 1 << 20)


def test_narrow_integers_out_of_range_are_refused() -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="INT8", shape=[1, 2])
    tensor.contents.int_contents.extend([1, 300])
    with pytest.raises(InvalidArgumentError, match="outside the range of INT8"):
        infer_request(request, 1 << 20)


@pytest.mark.parametrize(
    ("datatype", "message"),
    [("FP16", "only be sent as raw"), ("BF16", "not supported"), ("FLOAT", "not supported")],
)
def test_unsupported_typed_datatypes(datatype: str, message: str) -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=[1])
    with pytest.raises(InvalidArgumentError, match=message):
        infer_request(request, 1 << 20)


def test_negative_dimensions_and_missing_pieces() -> None:
    request = _raw_request(np.zeros((2, 3), np.float32), "FP32")
    request.inputs[0].shape[:] = [-1, 3]
    with pytest.raises(InvalidArgumentError, match="negative"):
        infer_request(request, 1 << 20)
    with pytest.raises(InvalidArgumentError, match="model_name"):
        infer_request(pb.ModelInferRequest(), 1 << 20)
    with pytest.raises(InvalidArgumentError, match="no inputs"):
        infer_request(pb.ModelInferRequest(model_name="m"), 1 << 20)
    mismatched = _raw_request(np.zeros((2, 3), np.float32), "FP32")
    mismatched.raw_input_contents.append(b"")
    with pytest.raises(InvalidArgumentError, match="one per input"):
        infer_request(mismatched, 1 << 20)


def test_payload_limit() -> None:
    request = _raw_request(np.zeros((64, 64), np.float32), "FP32")
    with pytest.raises(PayloadTooLargeError, match="limit is 1000"):
        infer_request(request, 1000)
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="FP64", shape=[200]).contents.fp64_contents.extend(
        [0.0] * 200
    )
    with pytest.raises(PayloadTooLargeError):
        infer_request(typed, 1000)


def test_typed_contents_and_raw_input_contents_together_are_refused() -> None:
    # The protocol forbids sending both: the typed values must not be silently ignored.
    request = _raw_request(np.zeros((1, 2), np.float32), "FP32")
    request.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match="both") as err:
        infer_request(request, 1 << 20)
    assert err.value.violations[0].field == "inputs[0].contents"
    # An input without values next to one with them: the one with them is named.
    two = pb.ModelInferRequest(model_name="m")
    two.inputs.add(name="a", datatype="FP32", shape=[1])
    two.inputs.add(name="b", datatype="INT32", shape=[1]).contents.int_contents.append(7)
    two.raw_input_contents.extend([b"\0" * 4, b"\0" * 4])
    with pytest.raises(InvalidArgumentError, match="raw_input_contents") as err:
        infer_request(two, 1 << 20)
    assert err.value.violations[0].field == "inputs[1].contents"


def test_an_empty_contents_message_next_to_raw_contents_is_accepted() -> None:
    request = _raw_request(np.ones((1, 2), np.float32), "FP32")
    request.inputs[0].contents.SetInParent()  # present, but carries no values
    decoded = infer_request(request, 1 << 20).inputs[0]
    np.testing.assert_array_equal(decoded.data, np.ones((1, 2), np.float32))


ABSURD_SHAPES = [
    pytest.param([0, 2**62], id="zero-times-2^62"),
    pytest.param([2**62, 0], id="2^62-times-zero"),
    pytest.param([0, 2**63 - 1], id="zero-times-int64-max"),
    pytest.param([2**31, 0, 2**31], id="zero-between-2^31s"),
    pytest.param([0, 1 << 30], id="empty-rows-of-4GiB"),
    pytest.param([2**62, 2**62], id="overflows-int64"),
    pytest.param([2**63 - 1], id="int64-max"),
    pytest.param([1 << 20, 1 << 20], id="over-the-request-limit"),
    pytest.param([-1, 2], id="minus-one"),
    pytest.param([-(2**63), 0], id="int64-min"),
    pytest.param([1] * 65, id="65-dimensions"),
]


@pytest.mark.parametrize("shape", ABSURD_SHAPES)
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_absurd_shapes_are_invalid_arguments(shape: list[int], raw: bool) -> None:
    """Checked with Python integers before numpy sees them: INVALID_ARGUMENT, never an
    exception from numpy (which the edge would answer INTERNAL)."""
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=shape)
    if raw:
        request.raw_input_contents.append(b"")
    else:
        tensor.contents.fp32_contents.extend([])
    with pytest.raises(InvalidArgumentError) as err:
        infer_request(request, 1 << 20)
    assert err.value.violations[0].field == "inputs[0].shape"


def test_shape_errors_say_what_is_wrong() -> None:
    request = _raw_request(np.zeros((0, 2), np.float32), "FP32")
    request.inputs[0].shape[:] = [0, 2**62]
    with pytest.raises(InvalidArgumentError, match="the limit of tensor data is 1048576 bytes"):
        infer_request(request, 1 << 20)
    request.inputs[0].shape[:] = [-1, 2]
    with pytest.raises(InvalidArgumentError, match="negative"):
        infer_request(request, 1 << 20)
    request.inputs[0].shape[:] = [1] * 65
    with pytest.raises(InvalidArgumentError, match="65 dimensions"):
        infer_request(request, 1 << 20)


def test_empty_tensors_with_sane_shapes_still_decode() -> None:
    # Zero rows are refused later, by the model's signature, not here.
    for shape in [(0, 8), (0,), (2, 0, 3), ()]:
        array = np.zeros(shape, np.float32)
        decoded = infer_request(_raw_request(array, "FP32"), 1 << 20).inputs[0]
        assert decoded.data.shape == shape


def test_parameters_priority_and_timeout() -> None:
    request = _raw_request(np.zeros((1, 3), np.float32), "FP32")
    request.parameters["priority"].uint64_param = 2
    request.parameters["timeout"].int64_param = 250_000
    decoded = infer_request(request, 1 << 20)
    assert decoded.priority == 2
    assert decoded.timeout_s == pytest.approx(0.25)
    request.parameters["priority"].string_param = "high"
    with pytest.raises(InvalidArgumentError, match="priority"):
        infer_request(request, 1 << 20)


def test_response_echoes_id_and_parameters_in_raw_contents() -> None:
    request = _raw_request(np.zeros((2, 3), np.float32), "FP32")
    request.id = "req-7"
    request.parameters["x-trace"].string_param = "abc"
    result = InferResult(
        "m", 3, [OutputTensor("y", "INT64", np.arange(6, dtype=np.int64).reshape(2, 3))]
    )
    response = infer_response(request, result)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "req-7")
    assert response.parameters["x-trace"].string_param == "abc"
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", "INT64", [2, 3])
    ]
    np.testing.assert_array_equal(
        np.frombuffer(response.raw_output_contents[0], np.int64), np.arange(6)
    )


@pytest.mark.parametrize(
    ("datatype", "expected"),
    [
        ("FP32", "TYPE_FP32"),
        ("INT64", "TYPE_INT64"),
        ("BYTES", "TYPE_STRING"),
        ("?", "TYPE_INVALID"),
    ],
)
def test_triton_data_type(datatype: str, expected: str) -> None:
    from modelhub.inference.convert import triton_data_type

    assert triton_data_type(datatype) == expected


def test_model_config_of_an_unbatchable_model_keeps_every_dimension() -> None:
    from modelhub.api.oip import model_config_pb2 as mpb
    from modelhub.inference.convert import model_config
    from modelhub.inference.service import ModelConfiguration
    from modelhub.inference.spec import Device, LoadOptions, ModelSchema, TensorSpec

    schema = ModelSchema((TensorSpec("x", "FP32", (2, 3)),), (TensorSpec("y", "FP16", (2, 3)),))
    config = model_config(
        ModelConfiguration("m", 1, "onnxruntime_onnx", schema, 0, LoadOptions(), Device.GPU)
    ).config
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [2, 3]
    assert config.output[0].data_type == mpb.TYPE_FP16
    assert not config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == mpb.ModelInstanceGroup.KIND_GPU
