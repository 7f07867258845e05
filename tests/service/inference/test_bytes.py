"""BYTES (string) tensors end to end over ModelInfer: raw length-prefixed and typed
`bytes_contents` contents, string in / numbers out and back, concurrent requests merged
into one batch, malformed payloads, tritonclient's own encoding, metadata — and models
whose tensors cannot be carried refused at load with the reason, never READY."""

from __future__ import annotations

import asyncio
import json
import struct
import sys

import grpc
import numpy as np
import pytest
from onnx import TensorProto

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import model_config_pb2 as mpb
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from tests.onnx_models import (
    cast_output,
    id_to_string,
    sequence_output,
    string_identity,
    string_to_id,
)
from tests.service.inference.conftest import StartInference, stubs
from tests.unit.inference.helpers import MemorySource, RunGate

LABELS = ("cat", "dog", "émeu")
TEXTS = ["", "héllo wörld", "日本語", "a\x00b", "x" * 70_000, "🙂"]


def _prefixed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _unprefixed(raw: bytes) -> list[bytes]:
    items, position = [], 0
    while position < len(raw):
        (length,) = struct.unpack_from("<I", raw, position)
        items.append(raw[position + 4 : position + 4 + length])
        position += 4 + length
    return items


def _request(
    model: str,
    items: list[bytes],
    shape: list[int],
    *,
    typed: bool = False,
    request_id: str = "",
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    tensor = request.inputs.add(name="x", datatype="BYTES", shape=shape)
    if typed:
        tensor.contents.bytes_contents.extend(items)
    else:
        request.raw_input_contents.append(_prefixed(items))
    return request


def _bytes_output(response: pb.ModelInferResponse, index: int = 0) -> list[bytes]:
    tensor = response.outputs[index]
    assert tensor.datatype == "BYTES"
    if response.raw_output_contents:
        return _unprefixed(response.raw_output_contents[index])
    return list(tensor.contents.bytes_contents)


def _source() -> MemorySource:
    source = MemorySource()
    source.add("words", 1, string_identity(2))
    source.add("label-id", 1, string_to_id(LABELS))
    source.add("id-label", 1, id_to_string(LABELS))
    return source


def _reason(error: grpc.aio.AioRpcError) -> str:
    info = error_info(dict(error.trailing_metadata())[STATUS_DETAILS_KEY])
    assert info is not None
    return info.reason


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
async def test_string_identity_round_trips(
    start_inference: StartInference, channel_to, typed: bool
) -> None:
    app = await start_inference(source=_source())
    stub, _ = stubs(channel_to(app))
    items = [text.encode() for text in TEXTS]
    response = await stub.ModelInfer(_request("words", items, [3, 2], typed=typed))
    assert list(response.outputs[0].shape) == [3, 2]
    assert bool(response.raw_output_contents) is not typed  # answered as it was asked
    assert _bytes_output(response) == items
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="words"))).ready


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
async def test_strings_in_numbers_out_and_numbers_in_strings_out(
    start_inference: StartInference, channel_to, typed: bool
) -> None:
    app = await start_inference(source=_source())
    stub, _ = stubs(channel_to(app))
    words = [b"dog", "émeu".encode(), b"", b"cat", b"Cat"]
    response = await stub.ModelInfer(_request("label-id", words, [5], typed=typed))
    assert response.outputs[0].datatype == "INT64"
    if typed:
        ids = list(response.outputs[0].contents.int64_contents)
    else:
        ids = np.frombuffer(response.raw_output_contents[0], np.int64).tolist()
    assert ids == [1, 2, -1, 0, -1]

    request = pb.ModelInferRequest(model_name="id-label")
    tensor = request.inputs.add(name="x", datatype="INT64", shape=[4])
    numbers = np.array([2, 0, 7, 1], np.int64)
    if typed:
        tensor.contents.int64_contents.extend(numbers.tolist())
    else:
        request.raw_input_contents.append(numbers.tobytes())
    response = await stub.ModelInfer(request)
    assert _bytes_output(response) == ["émeu".encode(), b"cat", b"?", b"dog"]


async def test_concurrent_string_requests_merge_and_each_gets_its_own_rows(
    start_inference: StartInference, channel_to
) -> None:
    gate = RunGate(models=["words"])
    app = await start_inference(
        source=_source(), run_hook=gate, max_batch_size=16, inline_compute_us=0
    )
    stub, repository = stubs(channel_to(app))
    await repository.LoadModel(ipb.LoadModelRequest(model="words"))
    gate.entered.clear()
    gate.close()
    first = asyncio.ensure_future(stub.ModelInfer(_request("words", [b"hold", b"on"], [1, 2])))
    await asyncio.to_thread(gate.entered.wait, 10)  # the executor is busy with `first`
    requests = []
    for index, rows in enumerate((1, 3, 2)):
        items = [f"r{index}-{row}-{col}-é".encode() for row in range(rows) for col in range(2)]
        items[0] = b"" if index == 1 else items[0]
        requests.append((items, _request("words", items, [rows, 2], typed=index == 2)))
    calls = [asyncio.ensure_future(stub.ModelInfer(r)) for _, r in requests]
    while True:  # until all three wait in the queue together
        stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model="words"))
        if stats.model_stats[0].queue_depth == 3:
            break
        await asyncio.sleep(0.01)
    gate.open()
    assert _bytes_output(await first) == [b"hold", b"on"]
    answers = await asyncio.gather(*calls)
    for (items, _), answer in zip(requests, answers, strict=True):
        assert list(answer.outputs[0].shape) == [len(items) // 2, 2]
        assert _bytes_output(answer) == items
    assert gate.rows_seen("words")[-1] == 6  # 1 + 3 + 2 rows in one run
    merged = gate.runs[-1][1]["x"]
    assert merged.dtype == np.dtype(object) and merged[0, 0] == "r0-0-0-é"  # str for ORT


@pytest.mark.parametrize(
    ("what", "raw", "shape", "message"),
    [
        ("truncated element", _prefixed([b"abc", b"de"])[:-1], [1, 2], "declares 2 bytes"),
        ("truncated prefix", _prefixed([b"abc"]) + b"\x02\x00", [1, 2], "length prefix"),
        ("too short for the shape", _prefixed([b"a"]), [2, 2], "too few"),
        ("more elements than the shape", _prefixed([b"a", b"b", b"c"]), [1, 2], "after the 2"),
        ("overlong prefix", struct.pack("<I", 1 << 31) + b"abcd", [1, 2], "declares 2147483648"),
    ],
)
async def test_malformed_raw_bytes_are_invalid_argument(
    start_inference: StartInference,
    channel_to,
    what: str,
    raw: bytes,
    shape: list[int],
    message: str,
) -> None:
    app = await start_inference(source=_source())
    stub, _ = stubs(channel_to(app))
    request = pb.ModelInferRequest(model_name="words")
    request.inputs.add(name="x", datatype="BYTES", shape=shape)
    request.raw_input_contents.append(raw)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
    assert message in (err.value.details() or ""), what
    assert "inputs[0]" in (err.value.details() or ""), what
    # The server keeps serving.
    answer = await stub.ModelInfer(_request("words", [b"a", b"b"], [1, 2]))
    assert _bytes_output(answer) == [b"a", b"b"]


async def test_non_utf8_typed_and_raw_together_are_refused(
    start_inference: StartInference, channel_to
) -> None:
    app = await start_inference(source=_source())
    stub, _ = stubs(channel_to(app))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(_request("words", [b"ok", b"\xff\xfe"], [1, 2]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'x'" in (err.value.details() or "")
    assert "UTF-8" in (err.value.details() or "")
    both = _request("words", [b"a", b"b"], [1, 2])
    both.inputs[0].contents.bytes_contents.extend([b"a", b"b"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(both)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not both" in (err.value.details() or "")


async def test_string_metadata_and_config(start_inference: StartInference, channel_to) -> None:
    app = await start_inference(source=_source())
    stub, repository = stubs(channel_to(app))
    loaded = await repository.LoadModel(ipb.LoadModelRequest(model="words"))
    assert loaded.model.state == ipb.READY
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="words"))
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("x", "BYTES", [-1, 2])
    ]
    assert [(t.name, t.datatype) for t in metadata.outputs] == [("y", "BYTES")]
    config = (await stub.ModelConfig(pb.ModelConfigRequest(name="words"))).config
    assert config.max_batch_size > 0
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("x", mpb.TYPE_STRING, [2])
    ]
    assert [t.data_type for t in config.output] == [mpb.TYPE_STRING]
    label = (await stub.ModelConfig(pb.ModelConfigRequest(name="label-id"))).config
    assert [t.data_type for t in label.input] == [mpb.TYPE_STRING]
    assert [t.data_type for t in label.output] == [mpb.TYPE_INT64]


UNSERVABLE = {
    "sequence": (sequence_output(), "output 'y' is seq(tensor(float)) (an ONNX sequence"),
    "bfloat16": (cast_output(TensorProto.BFLOAT16), "output 'y' is BF16"),
    "float8": (
        cast_output(TensorProto.FLOAT8E4M3FN),
        "output 'y' is tensor(float8e4m3fn) (no Open Inference Protocol datatype)",
    ),
}


async def test_unservable_models_are_refused_at_load_with_the_reason(
    start_inference: StartInference, channel_to
) -> None:
    source = _source()
    for name, (data, _) in UNSERVABLE.items():
        source.add(name, 1, data)
    app = await start_inference(source=source)
    stub, repository = stubs(channel_to(app))
    for name, (_, reason) in UNSERVABLE.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await repository.LoadModel(ipb.LoadModelRequest(model=name))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
        assert reason in (err.value.details() or ""), name
        assert _reason(err.value) == "UNSUPPORTED_DATATYPE", name
        assert not (await stub.ModelReady(pb.ModelReadyRequest(name=name))).ready
        # Loading on demand fails the same way, never READY then failing.
        request = pb.ModelInferRequest(model_name=name)
        request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
        request.raw_input_contents.append(np.zeros((1, 2), np.float32).tobytes())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(request)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
        assert not (await stub.ModelReady(pb.ModelReadyRequest(name=name))).ready
    index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest())
    failed = {m.name: m for m in index.models if m.name in UNSERVABLE}
    assert set(failed) == set(UNSERVABLE)
    for name, entry in failed.items():
        assert entry.state == ipb.FAILED
        assert UNSERVABLE[name][1] in entry.reason
    # String models load and serve next to them.
    loaded = await repository.LoadModel(ipb.LoadModelRequest(model="label-id"))
    assert loaded.model.state == ipb.READY
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="label-id"))).ready
    response = await stub.ModelInfer(_request("label-id", [b"cat"], [1]))
    assert np.frombuffer(response.raw_output_contents[0], np.int64).tolist() == [0]


# tritonclient.grpc cannot share a process with ModelHub's protobuf modules (see
# test_tritonclient.py): it runs in a subprocess, and reports what it got as JSON.
TRITON_SCRIPT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient

url, model = sys.argv[1:3]
texts = json.loads(sys.argv[3])
client = grpcclient.InferenceServerClient(url=url)
out = {"ready_before": client.is_model_ready(model)}
as_str = np.array(texts, dtype=object).reshape(-1, 2)
as_bytes = np.array([t.encode() for t in texts], dtype=object).reshape(-1, 2)
for kind, data in (("str", as_str), ("bytes", as_bytes)):
    x = grpcclient.InferInput("x", list(data.shape), "BYTES")
    x.set_data_from_numpy(data)
    result = client.infer(model, [x], outputs=[grpcclient.InferRequestedOutput("y")])
    y = result.as_numpy("y")
    out[kind] = {"dtype": str(y.dtype), "shape": list(y.shape),
                 "types": sorted({type(e).__name__ for e in y.ravel()}),
                 "hex": [e.hex() for e in y.ravel()]}
out["ready"] = client.is_model_ready(model)
out["metadata"] = client.get_model_metadata(model, as_json=True)
print(json.dumps(out))
"""


async def test_tritonclient_bytes_round_trip(start_inference: StartInference) -> None:
    app = await start_inference(source=_source())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        TRITON_SCRIPT,
        app.address,
        "words",
        json.dumps(TEXTS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    got = json.loads(stdout)
    assert not got["ready_before"]
    assert got["ready"]  # loaded on demand by the first request
    assert got["metadata"]["inputs"] == [{"name": "x", "datatype": "BYTES", "shape": ["-1", "2"]}]
    expected = [text.encode().hex() for text in TEXTS]
    for kind in ("str", "bytes"):
        assert got[kind]["dtype"] == "object", kind
        assert got[kind]["shape"] == [3, 2], kind
        assert got[kind]["types"] == ["bytes"], kind
        assert got[kind]["hex"] == expected, kind
