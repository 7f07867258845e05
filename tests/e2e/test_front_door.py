"""Through Envoy with real processes: reflection, gRPC and transcoded JSON give the same
answers, tritonclient works unchanged, writes need a token, and one request is one trace
across Envoy, router, inference (with its batch span linked) and monitor."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio

from modelhub.api.oip import grpc_predict_v2_pb2 as oip
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.devstack import demo
from modelhub.devstack.stack import demo_request, demo_traffic
from tests.e2e.otlp import Receiver, start_receiver
from tests.e2e.suite import ADMIN_TOKEN, Suite, running_suite

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("front-door"),
    pytest.mark.asyncio(loop_scope="module"),
]

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
FEATURES = np.array([[0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 1.2, 0.9]], dtype=np.float32)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def traced_suite(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Suite, Receiver]]:
    server, receiver, port = await start_receiver()
    try:
        var = tmp_path_factory.mktemp("front-door")
        async with running_suite(var, auth=True, otlp=f"127.0.0.1:{port}") as suite:
            await demo_traffic(suite.front, users=20)
            yield suite, receiver
    finally:
        await server.stop(0)


def _expected(version: int) -> np.ndarray:
    session = ort.InferenceSession(demo.classifier(version), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": FEATURES})[0]


async def _grpc_infer(front: str, user: str) -> oip.ModelInferResponse:
    async with grpc.aio.insecure_channel(front) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        return await stub.ModelInfer(
            demo_request(FEATURES, f"grpc-{user}"), metadata=[("x-user-id", user)], timeout=10
        )


def _http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    if body is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:  # Envoy's own errors (unknown route, bad JSON) are plain text
        return status, {"text": raw.decode(errors="replace")}


def _json_output(body: dict) -> np.ndarray:
    output = body["outputs"][0]
    shape = [int(d) for d in output["shape"]]
    if body.get("raw_output_contents"):
        raw = base64.b64decode(body["raw_output_contents"][0])
        return np.frombuffer(raw, dtype=np.float32).reshape(shape)
    if "contents" in output:  # grpcurl: typed contents
        return np.array(output["contents"]["fp32_contents"], dtype=np.float32).reshape(shape)
    return np.array(output["data"], dtype=np.float32).reshape(shape)  # REST v2


async def test_grpcurl_reflection_lists_and_calls(traced_suite: tuple[Suite, Receiver]) -> None:
    suite, _ = traced_suite

    def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
        )

    listed = await asyncio.to_thread(grpcurl, suite.front, "list")
    assert listed.returncode == 0, listed.stderr
    for service in (
        "inference.GRPCInferenceService",
        "modelhub.registry.v1.RegistryService",
        "modelhub.router.v1.RouterService",
        "modelhub.monitor.v1.MonitorService",
    ):
        assert service in listed.stdout.split()

    versions = await asyncio.to_thread(
        grpcurl, "-d", '{"parent": "models/fraud"}', suite.front,
        "modelhub.registry.v1.RegistryService/ListModelVersions",
    )  # fmt: skip
    assert versions.returncode == 0, versions.stderr
    assert {v["version"] for v in json.loads(versions.stdout)["versions"]} == {"1", "2"}

    body = json.dumps(
        {
            "model_name": "fraud",
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [1, 8],
                    "contents": {"fp32_contents": FEATURES[0].tolist()},
                }
            ],
        }
    )
    inferred = await asyncio.to_thread(
        grpcurl, "-H", "x-user-id: 7", "-d", body, suite.front,
        "inference.GRPCInferenceService/ModelInfer",
    )  # fmt: skip
    assert inferred.returncode == 0, inferred.stderr
    answer = json.loads(inferred.stdout)
    version = int(answer["model_version"])
    np.testing.assert_allclose(_json_output(answer), _expected(version), rtol=1e-5)


async def test_json_over_http_equals_grpc(traced_suite: tuple[Suite, Receiver]) -> None:
    suite, _ = traced_suite
    for user in ("alice", "bob", "carol"):
        grpc_answer = await _grpc_infer(suite.front, user)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP32",
                        "shape": [1, 8],
                        "data": FEATURES[0].tolist(),
                    }
                ]
            }
        ).encode()
        status, answer = await asyncio.to_thread(
            _http, f"http://{suite.front}/v2/models/fraud/infer", body, {"x-user-id": user}
        )
        assert status == 200, answer
        # The same user gets the same variant over both protocols, and the same numbers.
        assert answer["model_version"] == grpc_answer.model_version
        assert (
            answer["parameters"]["modelhub.variant"]
            == grpc_answer.parameters["modelhub.variant"].string_param
        )
        grpc_values = np.frombuffer(grpc_answer.raw_output_contents[0], dtype=np.float32)
        np.testing.assert_allclose(_json_output(answer).ravel(), grpc_values, rtol=1e-6)

    status, listed = await asyncio.to_thread(
        _http, f"http://{suite.front}/v1/models/fraud/versions"
    )
    assert status == 200
    assert len(listed["versions"]) == 2
    status, missing = await asyncio.to_thread(_http, f"http://{suite.front}/v1/models/nope")
    assert status == 404
    assert missing["message"] == "model 'nope' not found"
    status, _ = await asyncio.to_thread(_http, f"http://{suite.front}/v1/no/such/route")
    assert status == 404
    status, _ = await asyncio.to_thread(
        _http, f"http://{suite.front}/v1/models", b"{not json", {"authorization": "Bearer x"}
    )
    assert status == 400


async def test_writes_need_a_token(traced_suite: tuple[Suite, Receiver]) -> None:
    suite, _ = traced_suite
    body = json.dumps({"description": "made over HTTP"}).encode()
    url = f"http://{suite.front}/v1/models?model_id=made-over-http"
    status, answer = await asyncio.to_thread(_http, url, body)
    assert status == 401, answer
    assert "needs credentials" in answer["message"]
    status, answer = await asyncio.to_thread(
        _http, url, body, {"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert status == 200, answer
    assert answer["name"] == "models/made-over-http"

    async with grpc.aio.insecure_channel(suite.front) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateModel(rpb.CreateModelRequest(model_id="no-token"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        created = await stub.CreateModel(
            rpb.CreateModelRequest(model_id="with-token"),
            metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")],
        )
        assert created.name == "models/with-token"
        # Reads and inference stay open (anonymous reader).
        listed = await stub.ListModels(rpb.ListModelsRequest())
        assert "models/with-token" in [m.name for m in listed.models]


TRITON_SCRIPT = """
import json, sys
import numpy as np
import tritonclient.grpc as triton

client = triton.InferenceServerClient(sys.argv[1])
assert client.is_server_live() and client.is_server_ready()
metadata = client.get_model_metadata("fraud", as_json=True)
features = np.array(json.loads(sys.argv[2]), dtype=np.float32)
inp = triton.InferInput("features", list(features.shape), "FP32")
inp.set_data_from_numpy(features)
result = client.infer("fraud", [inp], headers={"x-user-id": "triton-user"})
response = result.get_response(as_json=True)
print(json.dumps({
    "inputs": [i["name"] for i in metadata["inputs"]],
    "version": response["model_version"],
    "output": result.as_numpy("probabilities").tolist(),
}))
"""


async def test_tritonclient_through_envoy(traced_suite: tuple[Suite, Receiver]) -> None:
    suite, _ = traced_suite
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", TRITON_SCRIPT, suite.front, json.dumps(FEATURES.tolist())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["inputs"] == ["features"]
    expected = _expected(int(answer["version"]))
    np.testing.assert_allclose(np.array(answer["output"]), expected, rtol=1e-5)


async def test_one_trace_from_envoy_to_monitor(traced_suite: tuple[Suite, Receiver]) -> None:
    suite, receiver = traced_suite
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with grpc.aio.insecure_channel(suite.front) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(
            demo_request(FEATURES, "traced-request"),
            metadata=[("x-user-id", "tracer"), ("traceparent", traceparent)],
            timeout=10,
        )
    # Envoy → inference → monitor: the router is not in the request's path any more.
    wanted = {"modelhub-envoy", "modelhub-inference", "modelhub-monitor"}
    services: set[str] = set()
    for _ in range(100):  # Envoy flushes its spans about every 5 s
        services = {s.service for s in receiver.spans if s.trace_id == trace_id}
        if wanted <= services and any(
            trace_id in {link[0] for link in s.links} for s in receiver.spans
        ):
            break
        await asyncio.sleep(0.2)
    assert wanted <= services, services
    # The inference batch run is its own span, linked to the requests it served.
    linked = [
        s
        for s in receiver.spans
        if s.service == "modelhub-inference" and trace_id in {link[0] for link in s.links}
    ]
    assert linked, [s.name for s in receiver.spans if s.service == "modelhub-inference"]
