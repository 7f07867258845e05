"""The data path's wire helpers agree with protobuf: fields read from the request bytes,
and appended fields win when a real parser reads the result."""

from __future__ import annotations

import random

import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.router import wire


def _request(rng: random.Random) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=rng.choice(["fraud", "m", "ünïcode-model", "x" * 300]),
        model_version=rng.choice(["", "3", "champion"]),
        id=rng.choice(["", "req-1", "a" * 200]),
    )
    for i in range(rng.randint(0, 3)):
        request.parameters[f"p{i}"].string_param = f"v{i}"
    rows = rng.randint(1, 4)
    for i in range(rng.randint(1, 3)):
        data = np.arange(rows * 4, dtype=np.float32) * rng.random()
        request.inputs.add(name=f"in{i}", datatype="FP32", shape=[rows, 4])
        request.raw_input_contents.append(data.tobytes() * rng.randint(1, 300))
    request.outputs.add(name="y")
    return request


def test_scan_reads_the_routing_fields_of_random_requests() -> None:
    rng = random.Random(7)
    for _ in range(300):
        request = _request(rng)
        header = wire.scan_request(request.SerializeToString())
        assert header.model_name == request.model_name
        assert header.model_version == request.model_version
        assert header.id == request.id
        for name, value in request.parameters.items():
            assert header.parameter(name) == value.string_param
        assert header.parameter("absent") is None


def test_scan_of_an_empty_request() -> None:
    header = wire.scan_request(b"")
    assert (header.model_name, header.model_version, header.id) == ("", "", "")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (pb.InferParameter(string_param="42"), "42"),
        (pb.InferParameter(int64_param=42), "42"),
        (pb.InferParameter(int64_param=-7), "-7"),
        (pb.InferParameter(uint64_param=2**63 + 1), str(2**63 + 1)),
        (pb.InferParameter(bool_param=True), "true"),
        (pb.InferParameter(double_param=42.0), "42"),
        (pb.InferParameter(double_param=0.5), "0.5"),
    ],
)
def test_parameters_of_every_kind_read_as_text(value: pb.InferParameter, text: str) -> None:
    request = pb.ModelInferRequest(model_name="e")
    request.parameters["user"].CopyFrom(value)
    assert wire.scan_request(request.SerializeToString()).parameter("user") == text


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05fra",  # length past the end
        b"\x0a",  # length missing
        b"\x0a\x02\xff\xfe",  # model_name not UTF-8
        b"\x0b",  # wire type 3 (groups) unsupported
        b"\x10" + b"\xff" * 11,  # varint longer than 64 bits
    ],
)
def test_malformed_requests_are_invalid_arguments(data: bytes) -> None:
    with pytest.raises(wire.MalformedRequestError):
        wire.scan_request(data)


def test_appended_override_wins_for_protobuf() -> None:
    request = pb.ModelInferRequest(model_name="endpoint", model_version="", id="r")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(b"\0" * 16)
    data = request.SerializeToString() + wire.request_override("fraud", 7)
    parsed = pb.ModelInferRequest.FromString(data)
    assert (parsed.model_name, parsed.model_version, parsed.id) == ("fraud", "7", "r")
    assert parsed.raw_input_contents[0] == b"\0" * 16
    # A second override (the fallback) wins over the first.
    again = pb.ModelInferRequest.FromString(data + wire.request_override("other", 2))
    assert (again.model_name, again.model_version) == ("other", "2")
    # And the router's own scanner agrees.
    header = wire.scan_request(data)
    assert (header.model_name, header.model_version) == ("fraud", "7")


def test_appended_id_field() -> None:
    data = pb.ModelInferRequest(model_name="m").SerializeToString()
    parsed = pb.ModelInferRequest.FromString(data + wire.request_id_field("abc"))
    assert parsed.id == "abc"


def test_response_parameters_merge_into_the_backend_answer() -> None:
    response = pb.ModelInferResponse(model_name="m", model_version="1", id="r")
    response.parameters["modelhub.variant"].string_param = "stale"
    response.parameters["priority"].int64_param = 2
    response.outputs.add(name="y", datatype="FP32", shape=[1])
    response.raw_output_contents.append(b"\0\0\x80?")
    suffix = wire.response_parameters({"modelhub.variant": "b", "modelhub.version": "1"})
    merged = pb.ModelInferResponse.FromString(response.SerializeToString() + suffix)
    assert merged.parameters["modelhub.variant"].string_param == "b"
    assert merged.parameters["modelhub.version"].string_param == "1"
    assert merged.parameters["priority"].int64_param == 2
    assert merged.raw_output_contents[0] == b"\0\0\x80?"
