"""ModelStreamInfer: each message batched like a unary call, answered by id; through the
front door an endpoint stream is routed as a whole, sticky by the stream's key."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    FEATURES,
    ab_endpoint,
    infer_request,
    output,
    params,
)

SCRIPT = Path(__file__).with_name("triton_stream_script.py")

pytestmark = [pytest.mark.timeout(60), pytest.mark.xdist_group("envoy")]


async def _stream(
    address: str, requests: list[opb.ModelInferRequest], metadata: tuple[tuple[str, str], ...] = ()
) -> dict[str, opb.ModelStreamInferResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = opb_grpc.GRPCInferenceServiceStub(channel)

        async def messages() -> AsyncIterator[opb.ModelInferRequest]:
            for request in requests:
                yield request
                await asyncio.sleep(0)

        answers: dict[str, opb.ModelStreamInferResponse] = {}
        async for answer in stub.ModelStreamInfer(messages(), metadata=metadata):
            answers[answer.infer_response.id] = answer
        return answers


def _x(i: int) -> np.ndarray:
    return np.full((1, FEATURES), float(i), np.float32)


async def test_stream_interleaves_versions_and_survives_a_bad_message(
    inference: InferenceApp,
) -> None:
    requests = []
    for i in range(30):
        version = str(i % 3 + 1)
        requests.append(infer_request("m", _x(i), version=version, request_id=f"r{i}"))
    requests.insert(7, infer_request("nosuch", _x(0), request_id="bad"))
    answers = await _stream(inference.address, requests)
    assert set(answers) == {f"r{i}" for i in range(30)} | {"bad"}
    assert "NOT_FOUND" in answers["bad"].error_message
    for i in range(30):
        answer = answers[f"r{i}"]
        assert answer.error_message == ""
        version = i % 3 + 1
        assert answer.infer_response.model_version == str(version)
        np.testing.assert_array_equal(output(answer.infer_response), _x(i).ravel() + version)


async def test_endpoint_stream_is_sticky_and_other_models_run_directly(
    front_doors: FrontDoorFactory, registry_api: registry_pb2_grpc.RegistryServiceStub
) -> None:
    door = await front_doors()
    await ab_endpoint(registry_api, door.envoy)
    for user in ("u1", "u2", "u3", "u4"):
        expected = await door.clients.variant("ab", user)
        requests = []
        for i in range(10):
            if i % 2:
                requests.append(infer_request("m", _x(i), version="3", request_id=f"m{i}"))
            else:
                requests.append(infer_request("ab", _x(i), request_id=f"e{i}"))
        answers = await _stream(
            door.envoy.address, requests, (("x-modelhub-model", "ab"), ("x-user-id", user))
        )
        assert len(answers) == 10
        for i in range(10):
            response = answers[f"m{i}" if i % 2 else f"e{i}"].infer_response
            if i % 2:
                assert response.model_version == "3"
                assert "modelhub.variant" not in params(response)
                np.testing.assert_array_equal(output(response), _x(i).ravel() + 3)
            else:
                assert params(response)["modelhub.variant"] == expected
                offset = 1 if expected == "a" else 2
                np.testing.assert_array_equal(output(response), _x(i).ravel() + offset)


async def test_tritonclient_stream_direct_and_through_envoy(
    front_doors: FrontDoorFactory, inference: InferenceApp
) -> None:
    door = await front_doors()
    for address in (inference.address, door.envoy.address):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            address,
            str(FEATURES),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        got = json.loads(stdout)
        assert set(got["results"]) == {f"s{i}" for i in range(12)}
        for i in range(12):
            version = i % 3 + 1
            result = got["results"][f"s{i}"]
            assert result["version"] == str(version)
            assert result["y"] == [float(i) + version] * FEATURES
        assert "nosuch" in got["error"]
