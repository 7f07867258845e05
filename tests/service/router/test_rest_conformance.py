"""REST conformance through the front door, built from the Open Inference Protocol's own
REST examples (KServe "predict-api v2" / Triton's HTTP documentation): the inference request
and response example, tensor data flat and nested (row-major), every datatype in JSON and
with the binary tensor extension, plain JSON parameters, requested outputs, and every error
status. Every answer is parsed as JSON that must not repeat a key."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.settings import AuthSettings
from tests.service.registry.helpers import upload
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import start_inference
from tests.service.router.test_rest import http

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("envoy")]

# Datatype → (ONNX element type, a [2, 2] example as nested JSON).
DATATYPES: dict[str, tuple[int, list[list[Any]]]] = {
    "BOOL": (TensorProto.BOOL, [[True, False], [False, True]]),
    "UINT8": (TensorProto.UINT8, [[0, 1], [254, 255]]),
    "UINT16": (TensorProto.UINT16, [[0, 1], [65534, 65535]]),
    "UINT32": (TensorProto.UINT32, [[0, 1], [4294967294, 4294967295]]),
    "UINT64": (TensorProto.UINT64, [[0, 1], [2**63, 2**64 - 1]]),
    "INT8": (TensorProto.INT8, [[-128, -1], [0, 127]]),
    "INT16": (TensorProto.INT16, [[-32768, -1], [0, 32767]]),
    "INT32": (TensorProto.INT32, [[-(2**31), -1], [0, 2**31 - 1]]),
    "INT64": (TensorProto.INT64, [[-(2**63), -1], [0, 2**63 - 1]]),
    "FP16": (TensorProto.FLOAT16, [[0.5, -1.5], [65504.0, 0.0]]),
    "FP32": (TensorProto.FLOAT, [[1.0, 1.1], [-2.5, 3.0e38]]),
    "FP64": (TensorProto.DOUBLE, [[1.0, 1.1], [-2.5, 1.0e300]]),
    "BYTES": (TensorProto.STRING, [["abc", ""], ["dé", "a longer string"]]),
}
NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def identity(onnx_type: int) -> bytes:
    """input0 [-1, 2] → output0 = input0."""
    return _model(
        helper.make_graph(
            [helper.make_node("Identity", ["input0"], ["output0"])],
            "identity",
            [helper.make_tensor_value_info("input0", onnx_type, ["batch", 2])],
            [helper.make_tensor_value_info("output0", onnx_type, ["batch", 2])],
        )
    )


def example() -> bytes:
    """The protocol's example model: input0 UINT32 [n, 2] and input1 BOOL [3] in (no
    batch dimension in common: served unbatched); output0 FP32 (input0 as floats) and
    output1 BOOL (not input1) out."""
    return _model(
        helper.make_graph(
            [
                helper.make_node("Cast", ["input0"], ["output0"], to=TensorProto.FLOAT),
                helper.make_node("Not", ["input1"], ["output1"]),
            ],
            "example",
            [
                helper.make_tensor_value_info("input0", TensorProto.UINT32, ["n", 2]),
                helper.make_tensor_value_info("input1", TensorProto.BOOL, [3]),
            ],
            [
                helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["n", 2]),
                helper.make_tensor_value_info("output1", TensorProto.BOOL, [3]),
            ],
        )
    )


@pytest.fixture
async def models(registry_api: registry_pb2_grpc.RegistryServiceStub) -> None:
    await upload(registry_api, "example", example())
    for datatype, (onnx_type, _) in DATATYPES.items():
        await upload(registry_api, f"id-{datatype.lower()}", identity(onnx_type))


def _no_empty(value: Any, where: str = "answer") -> None:
    """No empty arrays or objects anywhere in an answer (the transcoder used to print every
    empty `*_contents`)."""
    if isinstance(value, dict):
        assert value, f"empty object at {where}"
        for key, item in value.items():
            _no_empty(item, f"{where}.{key}")
    elif isinstance(value, list):
        assert value or where.endswith(".data"), f"empty array at {where}"
        for index, item in enumerate(value):
            _no_empty(item, f"{where}[{index}]")


# The request example of the protocol's "Inference Request Examples" (input1 carries three
# values: the published example's `"data": [true]` does not match its own shape [3]).
SPEC_REQUEST = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
    ],
    "outputs": [{"name": "output0"}],
}


async def test_the_protocol_example(front_doors: FrontDoorFactory, models: None) -> None:
    door = await front_doors()
    answer = await http(door.envoy.address, "POST", "/v2/models/example/infer", SPEC_REQUEST)
    assert answer.status == 200, answer.body
    document = answer.json()
    _no_empty(document)
    assert document["id"] == "42"
    assert document["model_name"] == "example"
    assert document["model_version"] == "1"
    assert document["outputs"] == [
        {"name": "output0", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}
    ]
    # Nested data, row-major, is the same tensor.
    nested = json.loads(json.dumps(SPEC_REQUEST))
    nested["inputs"][0]["data"] = [[1, 2], [3, 4]]
    again = (await http(door.envoy.address, "POST", "/v2/models/example/infer", nested)).json()
    assert again["outputs"] == document["outputs"]


@pytest.mark.parametrize("datatype", list(DATATYPES))
async def test_every_datatype_json_and_binary(
    front_doors: FrontDoorFactory, models: None, datatype: str
) -> None:
    door = await front_doors()
    _, values = DATATYPES[datatype]
    path = f"/v2/models/id-{datatype.lower()}/infer"
    for data in (values, [v for row in values for v in row]):
        body = {"inputs": [{"name": "input0", "shape": [2, 2], "datatype": datatype, "data": data}]}
        answer = await http(door.envoy.address, "POST", path, body)
        assert answer.status == 200, answer.body
        document = answer.json()
        _no_empty(document)
        (out,) = document["outputs"]
        assert out["datatype"] == datatype and out["shape"] == [2, 2]
        flat = [v for row in values for v in row]
        if datatype == "FP32":
            np.testing.assert_array_equal(np.array(out["data"], np.float32), np.float32(flat))
        else:
            assert out["data"] == flat
        # JSON types: numbers are numbers, booleans booleans, BYTES strings.
        kinds = {"BOOL": bool, "BYTES": str}
        kind = kinds.get(datatype, float if datatype.startswith("FP") else int)
        assert all(type(v) is kind for v in out["data"]), out["data"]

    # The binary tensor extension, in and out.
    if datatype == "BYTES":
        items = [v.encode() for row in values for v in row]
        raw = b"".join(struct.pack("<I", len(v)) + v for v in items)
    else:
        raw = np.array(values, NUMPY[datatype]).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input0",
                    "shape": [2, 2],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    answer = await http(
        door.envoy.address,
        "POST",
        path,
        header + raw,
        {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert answer.status == 200, answer.body
    length = int(answer.headers["inference-header-content-length"])
    document = json.loads(answer.body[:length])
    (out,) = document["outputs"]
    assert out["parameters"] == {"binary_data_size": len(raw)}
    assert answer.body[length:] == raw


async def test_parameters_and_requested_outputs(
    front_doors: FrontDoorFactory, models: None
) -> None:
    door = await front_doors()
    body = json.loads(json.dumps(SPEC_REQUEST))
    # Plain JSON parameter values at every level (strings, booleans, numbers).
    body["parameters"] = {"content_type": "np", "priority": 0, "tag": "x", "ratio": 0.5}
    body["inputs"][0]["parameters"] = {"content_type": "np", "binary_data": False}
    body["outputs"] = [{"name": "output1", "parameters": {"binary_data": False}}]
    answer = await http(door.envoy.address, "POST", "/v2/models/example/infer", body)
    assert answer.status == 200, answer.body
    assert answer.json()["outputs"] == [
        {"name": "output1", "datatype": "BOOL", "shape": [3], "data": [False, True, False]}
    ]
    # All outputs, one binary and one JSON.
    body["outputs"] = [
        {"name": "output0", "parameters": {"binary_data": True}},
        {"name": "output1"},
    ]
    answer = await http(door.envoy.address, "POST", "/v2/models/example/infer", body)
    length = int(answer.headers["inference-header-content-length"])
    first, second = json.loads(answer.body[:length])["outputs"]
    assert first["parameters"] == {"binary_data_size": 16} and "data" not in first
    assert second["data"] == [False, True, False]
    np.testing.assert_array_equal(
        np.frombuffer(answer.body[length:], np.float32), [1.0, 2.0, 3.0, 4.0]
    )


def _with(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(SPEC_REQUEST))
    body["inputs"][0].update(changes)
    return body


def _binary_without_data(body: dict[str, Any]) -> dict[str, Any]:
    del body["inputs"][0]["data"]
    return body


BAD_REQUESTS = {
    "not json": b'{"inputs": [',
    "not an object": b"[1, 2]",
    "no inputs": {"inputs": []},
    "unknown datatype": _with(datatype="UINT128"),
    "datatype the model does not take": _with(datatype="INT32"),
    "count does not match the shape": _with(data=[1, 2, 3]),
    "ragged nested data": _with(data=[[1, 2], [3]]),
    "fraction in an integer tensor": _with(data=[1.5, 2, 3, 4]),
    "string in a number tensor": _with(data=["1", 2, 3, 4]),
    "value out of range": _with(data=[-1, 2, 3, 4]),
    "negative dimension": _with(shape=[-1, 2]),
    "absurd shape": _with(shape=[0, 2**62], data=[]),
    "shape not integers": _with(shape=["2", 2]),
    "unknown input": _with(name="nosuch"),
    "unknown output": {**SPEC_REQUEST, "outputs": [{"name": "nosuch"}]},
    "classification": {
        **SPEC_REQUEST,
        "outputs": [{"name": "output0", "parameters": {"classification": 2}}],
    },
    "binary size past the body": _binary_without_data(_with(parameters={"binary_data_size": 999})),
}


async def test_error_statuses(
    front_doors: FrontDoorFactory,
    models: None,
    registry_address: str,
    tmp_path: Path,
) -> None:
    door = await front_doors()
    address = door.envoy.address

    async def error(status: int, method: str, path: str, body: Any = None, **headers: str) -> str:
        answer = await http(address, method, path, body, headers)
        assert answer.status == status, (path, body, answer.status, answer.body)
        assert answer.headers["content-type"] == "application/json"
        document = answer.json()
        assert set(document) == {"error"} and isinstance(document["error"], str)
        assert document["error"]
        message: str = document["error"]
        return message

    for body in BAD_REQUESTS.values():
        await error(400, "POST", "/v2/models/example/infer", body)
    assert "nosuch" in await error(404, "POST", "/v2/models/nosuch/infer", SPEC_REQUEST)
    await error(404, "POST", "/v2/models/example/versions/9/infer", SPEC_REQUEST)
    await error(404, "GET", "/v2/models/nosuch")
    await error(404, "GET", "/v2/models/nosuch/ready")
    await error(404, "GET", "/v2/no/such/path")
    await error(400, "GET", "/v2/models/example?unknown=1")
    # The caller's own time budget (Triton's `timeout` parameter, microseconds): 504.
    await error(
        504, "POST", "/v2/models/example/infer", {**SPEC_REQUEST, "parameters": {"timeout": 1}}
    )

    # A replica with authentication and a small request limit: 401 and 429.
    strict = await start_inference(
        registry_address,
        tmp_path,
        name="strict",
        max_request_bytes=64,
        auth=AuthSettings(tokens="reader-token:reader,admin-token:admin"),
    )
    try:
        # A reader does not load a version on demand (docs/inference-memory.md): an
        # operator loads it first.
        async with grpc.aio.insecure_channel(strict.address) as channel:
            await ipb_grpc.ModelRepositoryServiceStub(channel).LoadModel(
                ipb.LoadModelRequest(model="example"),
                metadata=(("authorization", "Bearer admin-token"),),
            )
        door = await front_doors(backends=[strict.address], backend_token="reader-token")
        address = door.envoy.address
        await error(401, "POST", "/v2/models/example/infer", SPEC_REQUEST)
        await error(
            401, "POST", "/v2/models/example/infer", SPEC_REQUEST, Authorization="Bearer wrong"
        )
        bearer = {"Authorization": "Bearer reader-token"}
        ok = await http(address, "POST", "/v2/models/example/infer", SPEC_REQUEST, bearer)
        assert ok.status == 200, ok.body
        # Each tensor fits the 64-byte limit; together they do not.
        big = _with(shape=[8, 2], data=list(range(16)))
        assert "limit" in await error(429, "POST", "/v2/models/example/infer", big, **bearer)
    finally:
        await strict.stop(0)

    # No replica answers: 503.
    door = await front_doors(backends=["127.0.0.1:9"])
    await error(503, "POST", "/v2/models/example/infer", SPEC_REQUEST)
