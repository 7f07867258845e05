"""BYTES (string) tensors: the length-prefixed raw encoding, typed `bytes_contents`, the
request/response conversions, the ONNX Runtime string boundary and the load-time refusal
of models whose tensors cannot be carried."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    PayloadTooLargeError,
)
from modelhub.inference.codec import (
    bytes_elements,
    decode_bytes_raw,
    decode_raw,
    decode_typed,
    dtype_of,
    encode_bytes_raw,
    ort_strings,
)
from modelhub.inference.convert import infer_request, infer_response
from modelhub.inference.request import InferResult, InputTensor, OutputTensor
from modelhub.inference.signature import ModelSignature, check_servable
from modelhub.inference.spec import ModelSchema, TensorSpec

ELEMENTS = [b"", "héllo wörld".encode(), "日本語".encode(), b"a\x00b", b"x" * 300, b""]


def _prefixed(*items: bytes) -> bytes:
    """The protocol's raw BYTES encoding, built independently of the codec."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _objects(items: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):
        array[index] = item
    return array.reshape(shape)


# ---------------------------------------------------------------------- raw encoding


def test_raw_decode_is_row_major_object_array_of_bytes() -> None:
    decoded = decode_bytes_raw(_prefixed(*ELEMENTS), (2, 3), "inputs[0]")
    assert decoded.dtype == np.dtype(object)
    assert decoded.shape == (2, 3)
    assert decoded.tolist() == [ELEMENTS[:3], ELEMENTS[3:]]
    assert all(type(item) is bytes for item in decoded.ravel())


def test_raw_decode_takes_memoryviews() -> None:
    raw = _prefixed(*ELEMENTS)
    decoded = decode_bytes_raw(memoryview(bytearray(raw)), (6,), "x")
    assert decoded.tolist() == ELEMENTS
    assert all(type(item) is bytes for item in decoded)


def test_encode_matches_the_protocol_and_round_trips() -> None:
    array = _objects(ELEMENTS, (3, 2))
    raw = encode_bytes_raw(array)
    assert raw == _prefixed(*ELEMENTS)
    assert decode_bytes_raw(raw, (3, 2), "x").tolist() == array.tolist()
    # Row-major even for a transposed (Fortran-ordered) view.
    assert encode_bytes_raw(array.T) == _prefixed(*array.T.ravel().tolist())


def test_encode_accepts_str_and_numpy_string_arrays() -> None:
    texts = np.array(["", "héllo", "日本"], dtype=object)
    expected = _prefixed(b"", "héllo".encode(), "日本".encode())
    assert encode_bytes_raw(texts) == expected
    assert encode_bytes_raw(np.array(["", "héllo", "日本"])) == expected  # 'U'
    assert encode_bytes_raw(np.array([b"ab", b"c"])) == _prefixed(b"ab", b"c")  # 'S'
    with pytest.raises(TypeError, match="element 1"):
        encode_bytes_raw(np.array([b"a", 3], dtype=object))
    with pytest.raises(TypeError):
        encode_bytes_raw(np.zeros(2, np.float32))


def test_empty_tensors() -> None:
    assert encode_bytes_raw(np.empty((0, 3), dtype=object)) == b""
    decoded = decode_bytes_raw(b"", (0, 3), "x")
    assert decoded.shape == (0, 3) and decoded.dtype == np.dtype(object)
    assert decode_bytes_raw(_prefixed(b""), (1,), "x").tolist() == [b""]


@pytest.mark.parametrize(
    ("raw", "shape", "message"),
    [
        (_prefixed(b"ab")[:-1], (1,), "declares 2 bytes"),  # element cut short
        (_prefixed(b"ab") + b"\x01\x00", (2,), "inside the length prefix of element 1"),
        (_prefixed(b"ab", b"cd")[:-1], (2,), "element 1 of inputs.1. declares 2 bytes"),
        (_prefixed(b"a", b"") + b"\x05\x00\x00", (3,), "inside the length prefix of element 2"),
        (_prefixed(b"a", b"bc") + b"\x01\x00\x00\x00", (1, 2), "after the 2 elements"),
        (_prefixed(b"a", b"b", b"c"), (2,), "after the 2 elements"),  # count mismatch
        (_prefixed(b"ab", b"c"), (3,), "too few"),  # fewer elements than the shape
        (_prefixed(b"abcdefgh"), (3,), "end inside the length prefix of element 1"),
        (struct.pack("<I", 0xFFFFFFFF) + b"abc", (1,), "declares 4294967295 bytes"),
        (b"\x00", (0,), "after the 0 elements"),
    ],
)
def test_malformed_length_prefixes_are_refused(
    raw: bytes, shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as err:
        decode_bytes_raw(raw, shape, "inputs[1]")
    assert err.value.violations[0].field == "inputs[1]"
    assert "inputs[1]" in err.value.message


def test_a_huge_shape_is_refused_before_any_allocation() -> None:
    # 2**40 elements would need terabytes of object slots: the payload (8 bytes) cannot
    # hold their length prefixes, so nothing is allocated.
    with pytest.raises(InvalidArgumentError, match="too few"):
        decode_bytes_raw(_prefixed(b"abcd"), (1 << 20, 1 << 20), "x")


def test_dtype_of_and_dispatch() -> None:
    assert dtype_of("BYTES", "x") == np.dtype(object)
    raw = _prefixed(b"a", b"bc")
    assert decode_raw(raw, "BYTES", (2,), 4).tolist() == [b"a", b"bc"]
    with pytest.raises(InvalidArgumentError) as err:
        decode_raw(raw, "BYTES", (3,), 4)
    assert err.value.violations[0].field == "inputs[4]"
    typed = decode_typed([b"a", b"", b"\xff"], "BYTES", (1, 3), "inputs[0]")
    assert typed.dtype == np.dtype(object) and typed.tolist() == [[b"a", b"", b"\xff"]]
    with pytest.raises(InvalidArgumentError, match="hold 2 values"):
        decode_typed([b"a", b""], "BYTES", (3,), "inputs[0]")


# ---------------------------------------------------------------------- ModelInfer messages


def _bytes_request(items: list[bytes], shape: tuple[int, ...], typed: bool) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="BYTES", shape=shape)
    if typed:
        tensor.contents.bytes_contents.extend(items)
    else:
        request.raw_input_contents.append(_prefixed(*items))
    return request


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
def test_infer_request_decodes_bytes(typed: bool) -> None:
    decoded = infer_request(_bytes_request(ELEMENTS, (3, 2), typed), 1 << 20).inputs[0]
    assert decoded.datatype == "BYTES" and decoded.shape == (3, 2)
    assert decoded.data.dtype == np.dtype(object)
    assert decoded.data.ravel().tolist() == ELEMENTS


def test_typed_and_raw_together_are_refused_for_bytes() -> None:
    request = _bytes_request([b"a"], (1,), typed=False)
    request.inputs[0].contents.bytes_contents.append(b"a")
    with pytest.raises(InvalidArgumentError, match="not both") as err:
        infer_request(request, 1 << 20)
    assert err.value.violations[0].field == "inputs[0].contents"


def test_malformed_raw_bytes_in_a_request() -> None:
    request = _bytes_request([b"abc", b"d"], (2,), typed=False)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-1]
    with pytest.raises(InvalidArgumentError, match="inputs\\[0\\]"):
        infer_request(request, 1 << 20)


def test_bytes_count_their_payload_against_the_limit() -> None:
    # 100 empty strings: 400 bytes of length prefixes (not 800 bytes of pointers).
    assert infer_request(_bytes_request([b""] * 100, (100,), True), 400).inputs[0].shape == (100,)
    assert infer_request(_bytes_request([b""] * 100, (100,), False), 400).inputs[0].shape == (100,)
    # Ten 100-byte strings: 1040 bytes, over a 1000-byte limit either way.
    for typed in (False, True):
        with pytest.raises(PayloadTooLargeError, match="1040 bytes"):
            infer_request(_bytes_request([b"x" * 100] * 10, (10,), typed), 1000)
    # A shape that cannot fit the limit is refused before decoding.
    huge = _bytes_request([b""], (1,), typed=False)
    huge.inputs[0].shape[:] = [1 << 40]
    with pytest.raises(InvalidArgumentError, match="more data than a request may carry"):
        infer_request(huge, 1 << 20)


def _result(data: np.ndarray) -> InferResult:
    return InferResult(
        "m", 1, [OutputTensor("y", "BYTES", data), OutputTensor("n", "INT64", np.arange(3))]
    )


def test_infer_response_encodes_bytes_raw_and_typed() -> None:
    data = _objects(ELEMENTS[:3], (3,))
    raw = infer_response(_bytes_request([b"a"], (1,), typed=False), _result(data))
    assert [t.datatype for t in raw.outputs] == ["BYTES", "INT64"]
    assert list(raw.outputs[0].shape) == [3]
    assert raw.raw_output_contents[0] == _prefixed(*ELEMENTS[:3])
    assert np.frombuffer(raw.raw_output_contents[1], np.int64).tolist() == [0, 1, 2]
    typed = infer_response(_bytes_request([b"a"], (1,), typed=True), _result(data))
    assert not typed.raw_output_contents
    assert list(typed.outputs[0].contents.bytes_contents) == ELEMENTS[:3]
    assert list(typed.outputs[1].contents.int64_contents) == [0, 1, 2]


# ---------------------------------------------------------------------- ONNX Runtime boundary


def test_ort_strings_decode_utf8_and_name_the_input() -> None:
    array = _objects(["héllo".encode(), b"", "日本".encode(), b"a\x00"], (2, 2))
    texts = ort_strings(array, "query", "inputs[1]")
    assert texts.shape == (2, 2) and texts.dtype == np.dtype(object)
    assert texts.tolist() == [["héllo", ""], ["日本", "a\x00"]]
    bad = _objects([b"ok", b"\xff\xfe"], (2,))
    with pytest.raises(InvalidArgumentError, match="element 1 of input 'query'") as err:
        ort_strings(bad, "query", "inputs[1]")
    assert "UTF-8" in err.value.message
    assert err.value.violations[0].field == "inputs[1]"


def test_bytes_elements_encode_runtime_strings() -> None:
    out = bytes_elements(np.array([["", "dög"]], dtype=object))
    assert out.dtype == np.dtype(object) and out.tolist() == [[b"", "dög".encode()]]


STRING_SCHEMA = ModelSchema(
    inputs=(TensorSpec("n", "INT64", (-1,)), TensorSpec("s", "BYTES", (-1, 2))),
    outputs=(TensorSpec("y", "BYTES", (-1, 2)),),
)


def test_signature_hands_strings_to_the_session_and_batches_them() -> None:
    signature = ModelSignature(STRING_SCHEMA, 8)
    s = _objects([b"a", "é".encode(), b"", b"d"], (2, 2))
    arrays, rows, key = signature.prepare(
        [InputTensor("s", "BYTES", (2, 2), s), InputTensor("n", "INT64", (2,), np.arange(2))]
    )
    assert rows == 2 and key == ((), (2,))
    assert arrays[1].tolist() == [["a", "é"], ["", "d"]]
    assert signature.batchable
    # Two requests' strings concatenate and split back like any tensor.
    merged = np.concatenate([arrays[1], arrays[1][:1]])
    assert merged.shape == (3, 2) and merged[2].tolist() == ["a", "é"]


def test_signature_refuses_non_utf8_with_the_request_position() -> None:
    signature = ModelSignature(STRING_SCHEMA, 8)
    s = _objects([b"a", b"\xc3", b"", b"d"], (2, 2))
    with pytest.raises(InvalidArgumentError, match="input 's'") as err:
        signature.prepare(
            [InputTensor("n", "INT64", (2,), np.arange(2)), InputTensor("s", "BYTES", (2, 2), s)]
        )
    assert err.value.violations[0].field == "inputs[1]"


# ---------------------------------------------------------------------- servable models


def test_check_servable_accepts_strings_and_names_every_unservable_tensor() -> None:
    check_servable(STRING_SCHEMA, "m/1")  # BYTES is served
    schema = ModelSchema(
        inputs=(TensorSpec("x", "FP32", (-1, 2)), TensorSpec("b", "BF16", (-1,))),
        outputs=(
            TensorSpec("seq", "seq(tensor(float))", ()),
            TensorSpec("c", "tensor(complex64)", (-1,)),
            TensorSpec("m", "map(int64,tensor(float))", ()),
            TensorSpec("o", "optional(tensor(float))", ()),
        ),
    )
    with pytest.raises(FailedPreconditionError) as err:
        check_servable(schema, "m/1")
    message = err.value.message
    assert err.value.reason == "UNSUPPORTED_DATATYPE"
    assert "model m/1 cannot be served" in message
    for expected in (
        "input 'b' is BF16",
        "output 'seq' is seq(tensor(float)) (an ONNX sequence",
        "output 'c' is tensor(complex64) (no Open Inference Protocol datatype)",
        "output 'm' is map(int64,tensor(float)) (an ONNX map",
        "output 'o' is optional(tensor(float)) (an ONNX optional",
    ):
        assert expected in message
    assert "'x'" not in message
