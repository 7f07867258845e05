"""REST v2 (Open Inference Protocol) through the front door: Envoy's transcoder hands the
exact bytes to inference as `google.api.HttpBody`, routed like gRPC (docs/rest.md)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.service.inference.test_tritonclient import run_script
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import FEATURES, ab_endpoint

HTTP_SCRIPT = Path(__file__).with_name("triton_http_script.py")
GRPC_SCRIPT = Path(__file__).parent.parent / "inference" / "triton_client_script.py"

pytestmark = [pytest.mark.timeout(60), pytest.mark.xdist_group("envoy")]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
    return dict(pairs)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body, object_pairs_hook=_unique_keys)


def _call(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return Answer(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


async def http(
    address: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Answer:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return await asyncio.to_thread(_call, f"http://{address}{path}", method, data, headers or {})


def infer_body(rows: int = 1, value: float = 1.0) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": [rows, FEATURES],
                "datatype": "FP32",
                "data": [[value] * FEATURES for _ in range(rows)],
            }
        ]
    }


async def test_json_infer_by_model_and_version(front_doors: FrontDoorFactory) -> None:
    door = await front_doors()
    answer = await http(door.envoy.address, "POST", "/v2/models/m/versions/2/infer", infer_body(2))
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document["model_name"] == "m"
    assert document["model_version"] == "2"
    (out,) = document["outputs"]
    assert out["name"] == "y" and out["datatype"] == "FP32"
    assert out["shape"] == [2, FEATURES]
    assert out["data"] == [3.0] * (2 * FEATURES)


async def test_binary_extension_round_trip(front_doors: FrontDoorFactory) -> None:
    door = await front_doors()
    x = np.arange(3 * FEATURES, dtype=np.float32).reshape(3, FEATURES)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    answer = await http(
        door.envoy.address,
        "POST",
        "/v2/models/m/versions/1/infer",
        header + x.tobytes(),
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["inference-header-content-length"])
    document = json.loads(answer.body[:length])
    (out,) = document["outputs"]
    assert out["parameters"]["binary_data_size"] == x.nbytes
    assert "data" not in out
    got = np.frombuffer(answer.body[length:], np.float32).reshape(3, FEATURES)
    np.testing.assert_array_equal(got, x + 1)


async def test_errors_are_protocol_json(front_doors: FrontDoorFactory) -> None:
    door = await front_doors()
    address = door.envoy.address
    unknown = await http(address, "POST", "/v2/models/nosuch/infer", infer_body())
    assert unknown.status == 404
    assert set(unknown.json()) == {"error"}
    assert "nosuch" in unknown.json()["error"]
    bad = await http(address, "POST", "/v2/models/m/infer", {"inputs": [{"name": "x"}]})
    assert bad.status == 400 and "datatype" in bad.json()["error"]
    not_json = await http(address, "POST", "/v2/models/m/infer", b"{nope")
    assert not_json.status == 400 and "JSON" in not_json.json()["error"]
    path = await http(address, "GET", "/v2/nowhere")
    assert path.status == 404 and set(path.json()) == {"error"}


async def test_ready_and_metadata(front_doors: FrontDoorFactory) -> None:
    door = await front_doors()
    address = door.envoy.address
    assert (await http(address, "GET", "/v2/health/live")).status == 200
    assert (await http(address, "GET", "/v2/health/ready")).status == 200
    missing = await http(address, "GET", "/v2/models/nosuch/ready")
    assert missing.status == 404
    # Not loaded yet: a version that loads on demand is not ready, and says so.
    cold = await http(address, "GET", "/v2/models/m/versions/3/ready")
    assert cold.status == 400 and "on demand" in cold.json()["error"]
    assert (
        await http(address, "POST", "/v2/models/m/versions/3/infer", infer_body())
    ).status == 200
    assert (await http(address, "GET", "/v2/models/m/versions/3/ready")).status == 200
    metadata = (await http(address, "GET", "/v2/models/m")).json()
    assert metadata["inputs"][0]["shape"] == [-1, FEATURES]
    config = (await http(address, "GET", "/v2/models/m/config")).json()
    assert isinstance(config["max_batch_size"], int)
    server = (await http(address, "GET", "/v2")).json()
    assert server["name"]


async def test_endpoint_sticky_by_header(
    front_doors: FrontDoorFactory, registry_api: registry_pb2_grpc.RegistryServiceStub
) -> None:
    door = await front_doors()
    await ab_endpoint(registry_api, door.envoy)
    seen: dict[str, set[str]] = {}
    for user in ("u1", "u2", "u3", "u4", "u5", "u6"):
        for _ in range(3):
            answer = await http(
                door.envoy.address, "POST", "/v2/models/ab/infer", infer_body(), {"x-user-id": user}
            )
            assert answer.status == 200, answer.body
            document = answer.json()
            chosen = document["parameters"]["modelhub.variant"]
            expected = 2.0 if chosen == "a" else 3.0
            assert document["outputs"][0]["data"][0] == expected
            seen.setdefault(user, set()).add(chosen)
    assert all(len(v) == 1 for v in seen.values())
    grpc_variant = {u: await door.clients.variant("ab", u) for u in seen}
    assert grpc_variant == {u: next(iter(v)) for u, v in seen.items()}


async def test_tritonclient_http_json_binary_and_gzip(
    front_doors: FrontDoorFactory, registry_api: registry_pb2_grpc.RegistryServiceStub
) -> None:
    door = await front_doors()
    await ab_endpoint(registry_api, door.envoy)
    got = await run_script(HTTP_SCRIPT, door.envoy.address, "ab", "3", str(FEATURES))
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["unknown_ready"] is False
    assert got["metadata"]["inputs"][0] == {
        "name": "x",
        "datatype": "FP32",
        "shape": [-1, FEATURES],
    }
    assert got["config"]["input"][0]["data_type"] == "TYPE_FP32"
    x = np.array(got["x"], np.float32)
    variants = {a["parameters"]["modelhub.variant"] for a in got["answers"].values()}
    assert len(variants) == 1  # alice is sticky across encodings
    offset = 1.0 if variants == {"a"} else 2.0
    for mode, answer in got["answers"].items():
        np.testing.assert_array_equal(np.array(answer["y"], np.float32), x + offset, mode)
        assert answer["id"] == f"http-{mode}"
    assert got["errors"]["unknown"]["status"] == "404" or got["errors"]["unknown"]["status"] == 404
    assert "nosuch-model" in got["errors"]["unknown"]["message"]
    assert str(got["errors"]["bad_shape"]["status"]) == "400"


async def test_tritonclient_grpc_through_envoy(front_doors: FrontDoorFactory) -> None:
    """The same tritonclient.grpc script as against a replica, through the front door."""
    door = await front_doors()
    got = await run_script(GRPC_SCRIPT, door.envoy.address, "m", "FP32", "3", str(FEATURES))
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["metadata"]["inputs"][0]["shape"] == ["-1", str(FEATURES)]
    newest = int(got["model_version"])
    np.testing.assert_array_equal(np.array(got["y"]), np.array(got["x"]) + newest)
    assert got["id"] == "triton-1"
