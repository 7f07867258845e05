"""Triton's repository and statistics extensions through the front door (Envoy → router):
load and unload change the deployment (every replica), the index merges the replicas and
statistics are summed across them — with tritonclient.grpc (in a subprocess: its protobuf
symbols collide with ModelHub's), the REST paths over plain HTTP, and the roles."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.settings import AuthSettings
from modelhub.inference.main import InferenceApp
from modelhub.registry.main import RegistryApp
from modelhub.registry.migrate import upgrade
from modelhub.router import triton
from modelhub.router.triton_api import REPLICAS_HEADER
from tests.conftest import registry_settings
from tests.service.inference.test_tritonclient import run_script
from tests.service.router.conftest import FrontDoor, FrontDoorFactory
from tests.service.router.helpers import (
    infer_request,
    publish_versions,
    start_envoy,
    start_inference,
    start_router,
)

Stub = registry_pb2_grpc.RegistryServiceStub

# tritonclient.grpc, run as `python SCRIPT URL STEPS`: each step is ["index"],
# ["load", m], ["unload", m] or ["stats", m?, v?], optionally ending with {"token": t} (sent
# as `authorization: Bearer t`); prints one result per step.
TRITONCLIENT = r"""
import json, sys
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

client = grpcclient.InferenceServerClient(url=sys.argv[1])
results = []
for op, *args in json.loads(sys.argv[2]):
    headers = None
    if args and isinstance(args[-1], dict):
        headers = {"authorization": "Bearer " + args.pop()["token"]}
    try:
        if op == "index":
            value = client.get_model_repository_index(headers=headers, as_json=True)
        elif op == "load":
            value = client.load_model(args[0], headers=headers)
        elif op == "unload":
            value = client.unload_model(args[0], headers=headers)
        else:
            value = client.get_inference_statistics(*args, headers=headers, as_json=True)
        results.append({"ok": value})
    except InferenceServerException as exc:
        results.append({"error": str(exc.status()), "message": exc.message()})
print(json.dumps({"results": results}))
"""


TritonClient = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def tritonclient(tmp_path: Path) -> TritonClient:
    """`await tritonclient(url, *steps)`: the steps' results (see TRITONCLIENT)."""
    script = tmp_path / "triton_frontdoor_script.py"
    script.write_text(TRITONCLIENT, encoding="utf-8")

    async def run(url: str, *steps: list[Any]) -> list[dict[str, Any]]:
        got = await run_script(script, url, json.dumps(list(steps)))
        results: list[dict[str, Any]] = got["results"]
        return results

    return run


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _http(url: str, method: str, body: bytes | None, token: str) -> Reply:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return Reply(
                reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
            )
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


async def http(door: str, method: str, path: str, body: Any = None, *, token: str = "") -> Reply:
    """One REST call through the front door, in a thread (the servers run on this loop)."""
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    if method == "POST" and data is None:
        data = b""
    return await asyncio.to_thread(_http, f"http://{door}{path}", method, data, token)


# ----------------------------------------------------------------------- replicas


@dataclass
class Replica:
    app: InferenceApp
    channel: grpc.aio.Channel

    @property
    def address(self) -> str:
        return self.app.address

    @property
    def oip(self) -> opb_grpc.GRPCInferenceServiceStub:
        return opb_grpc.GRPCInferenceServiceStub(self.channel)

    async def ready(self, model: str, version: str = "") -> bool:
        reply = await self.oip.ModelReady(opb.ModelReadyRequest(name=model, version=version))
        return bool(reply.ready)

    async def index(self) -> list[tuple[str, str, str, bool]]:
        stub = ipb_grpc.ModelRepositoryServiceStub(self.channel)
        reply = await stub.RepositoryIndex(ipb.RepositoryIndexRequest())
        return [(m.name, m.version, ipb.ModelState.Name(m.state), m.pinned) for m in reply.models]

    async def infer(self, times: int, model: str = "m", version: str = "3") -> None:
        for _ in range(times):
            await self.oip.ModelInfer(infer_request(model, version=version))

    async def statistics(self, model: str = "m") -> list[opb.ModelStatistics]:
        reply = await self.oip.ModelStatistics(opb.ModelStatisticsRequest(name=model))
        return list(reply.model_stats)


@pytest.fixture
async def replicas(
    inference: InferenceApp, registry_address: str, tmp_path: Path
) -> AsyncIterator[list[Replica]]:
    """Two inference replicas following the registry (the fixture's and one more)."""
    second = await start_inference(registry_address, tmp_path, name="inf2")
    started = [Replica(app, grpc.aio.insecure_channel(app.address)) for app in (inference, second)]
    yield started
    for replica in started:
        await replica.channel.close()
    await second.stop(0)


@pytest.fixture
async def door(front_doors: FrontDoorFactory, replicas: list[Replica]) -> FrontDoor:
    return await front_doors(backends=[r.address for r in replicas])


async def deployments(stub: Stub, model: str = "m") -> list[rpb.Deployment]:
    reply = await stub.ListDeployments(rpb.ListDeploymentsRequest(model=f"models/{model}"))
    return list(reply.deployments)


def _free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# --------------------------------------------------------------------- tritonclient


async def test_tritonclient_load_index_statistics_and_unload_act_on_every_replica(
    registry_api: Stub, door: FrontDoor, replicas: list[Replica], tritonclient: TritonClient
) -> None:
    url = door.envoy.address
    before, loaded, index = await tritonclient(url, ["index"], ["load", "m"], ["index"])
    assert before == {"ok": {}}
    assert loaded == {"ok": None}, loaded
    # The load created a deployment for the model's default version (no champion: latest)
    # and answered once every replica serves it.
    (deployment,) = await deployments(registry_api)
    assert deployment.name == "deployments/m"
    assert deployment.labels["created-by"] == "repository-load"
    assert [(s.alias, s.resolved_version) for s in deployment.versions] == [("latest", 3)]
    for replica in replicas:
        assert await replica.ready("m", "3"), replica.address
        assert ("m", "3", "READY", True) in await replica.index()
    assert index == {"ok": {"models": [{"name": "m", "version": "3", "state": "READY"}]}}

    # Known numbers of requests on each replica, then the sum through the front door.
    await replicas[0].infer(3)
    await replicas[1].infer(2)
    (first,) = await replicas[0].statistics()
    (second,) = await replicas[1].statistics()
    assert (first.inference_count, second.inference_count) == (3, 2)
    (stats,) = await tritonclient(url, ["stats", "m"])
    (summed,) = stats["ok"]["model_stats"]
    assert (summed["name"], summed["version"]) == ("m", "3")
    assert summed["inference_count"] == "5"
    assert int(summed["execution_count"]) == first.execution_count + second.execution_count
    success = summed["inference_stats"]["success"]
    assert success["count"] == "5"
    ns = first.inference_stats.success.ns + second.inference_stats.success.ns
    assert int(success["ns"]) == ns
    assert int(summed["last_inference"]) == max(first.last_inference, second.last_inference)
    (batch,) = summed["batch_stats"]
    assert (batch["batch_size"], batch["compute_infer"]["count"]) == ("1", "5")
    (everything,) = await tritonclient(url, ["stats"])
    assert everything["ok"]["model_stats"] == [summed]

    unloaded, after, missing, again = await tritonclient(
        url, ["unload", "m"], ["index"], ["stats", "m"], ["unload", "m"]
    )
    assert unloaded == {"ok": None}, unloaded
    assert await deployments(registry_api) == []
    for replica in replicas:
        assert not await replica.ready("m", "3"), replica.address
    assert all(m["state"] != "READY" for m in after["ok"].get("models", [])), after
    assert missing["error"] == "StatusCode.NOT_FOUND", missing
    assert again["error"] == "StatusCode.NOT_FOUND", again


async def test_load_keeps_an_existing_deployment_and_unload_removes_it(
    registry_api: Stub, door: FrontDoor, replicas: list[Replica], tritonclient: TritonClient
) -> None:
    await registry_api.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment_id="pinned",
            deployment=rpb.Deployment(model="models/m", versions=[rpb.VersionSelector(version=2)]),
        )
    )
    (loaded,) = await tritonclient(door.envoy.address, ["load", "m"])
    assert loaded == {"ok": None}, loaded
    assert [d.name for d in await deployments(registry_api)] == ["deployments/pinned"]
    for replica in replicas:
        assert await replica.ready("m", "2"), replica.address
    (unloaded,) = await tritonclient(door.envoy.address, ["unload", "m"])
    assert unloaded == {"ok": None}, unloaded
    assert await deployments(registry_api) == []
    for replica in replicas:  # the unload answered once every replica let it go
        assert not await replica.ready("m", "2"), replica.address


async def test_load_of_a_model_without_versions_is_not_found(
    registry_api: Stub, door: FrontDoor, tritonclient: TritonClient
) -> None:
    await registry_api.CreateModel(rpb.CreateModelRequest(model_id="empty", model=rpb.Model()))
    missing, empty = await tritonclient(door.envoy.address, ["load", "nope"], ["load", "empty"])
    assert missing["error"] == "StatusCode.NOT_FOUND", missing
    assert empty["error"] == "StatusCode.NOT_FOUND", empty
    assert await deployments(registry_api, "empty") == []


# ----------------------------------------------------------------------------- REST


async def test_rest_paths_answer_triton_json(
    registry_api: Stub, door: FrontDoor, replicas: list[Replica]
) -> None:
    front = door.envoy.address
    reply = await http(front, "POST", "/v2/repository/index")
    assert (reply.status, reply.json()) == (200, []), reply
    assert reply.headers[REPLICAS_HEADER] == "2/2"

    reply = await http(front, "POST", "/v2/repository/models/m/load", {})
    assert (reply.status, reply.body) == (200, b""), reply
    reply = await http(front, "POST", "/v2/repository/index", {"ready": True})
    assert reply.status == 200, reply
    assert reply.json() == [{"name": "m", "version": "3", "state": "READY", "reason": ""}]

    await replicas[0].infer(1)
    await replicas[1].infer(3)
    for path in ("/v2/models/stats", "/v2/models/m/stats", "/v2/models/m/versions/3/stats"):
        reply = await http(front, "GET", path)
        assert reply.status == 200, (path, reply)
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers[REPLICAS_HEADER] == "2/2"
        (stats,) = reply.json()["model_stats"]
        assert (stats["name"], stats["version"]) == ("m", "3")
        # 64-bit counters are JSON numbers, not strings.
        assert stats["inference_count"] == 4, (path, stats)
        assert stats["inference_stats"]["success"]["count"] == 4
        assert isinstance(stats["inference_stats"]["success"]["ns"], int)
        # Every counter printed, zeros included, as Triton does.
        assert stats["inference_stats"]["fail"] == {"count": 0, "ns": 0}
        assert isinstance(stats["last_inference"], int) and stats["last_inference"] > 0
        assert stats["batch_stats"][0]["batch_size"] == 1

    # Errors: the status Triton answers, with {"error": …}.
    for method, path, body, status in [
        ("GET", "/v2/models/nope/stats", None, 404),
        ("GET", "/v2/models/m/versions/9/stats", None, 404),
        ("POST", "/v2/repository/index", {"ready": "yes"}, 400),
        ("POST", "/v2/repository/index", b"{not json", 400),
        ("POST", "/v2/repository/models/m/load", {"parameters": {"config": "{}"}}, 400),
        ("POST", "/v2/repository/models/nope/load", None, 404),
    ]:
        reply = await http(front, method, path, body)
        assert reply.status == status, (path, body, reply)
        error = reply.json()
        assert list(error) == ["error"] and error["error"], (path, error)

    reply = await http(front, "POST", "/v2/repository/models/m/unload", {})
    assert (reply.status, reply.body) == (200, b""), reply
    assert await deployments(registry_api) == []
    for replica in replicas:
        assert not await replica.ready("m", "3")
    reply = await http(front, "POST", "/v2/repository/models/m/unload")
    assert reply.status == 404, reply
    assert "neither deployed nor loaded" in reply.json()["error"]


async def test_a_replica_that_does_not_answer_is_left_out(
    registry_api: Stub, front_doors: FrontDoorFactory, inference: InferenceApp
) -> None:
    door = await front_doors(backends=[inference.address, _free_address()])
    async with grpc.aio.insecure_channel(inference.address) as channel:
        await opb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request("m", version="1"))
    reply = await http(door.envoy.address, "GET", "/v2/models/m/stats")
    assert reply.status == 200, reply
    assert reply.headers[REPLICAS_HEADER] == "1/2"
    (stats,) = reply.json()["model_stats"]
    assert (stats["version"], stats["inference_count"]) == ("1", 1)
    # The same over gRPC: the header is initial metadata.
    call = door.clients.oip.RepositoryIndex(opb.RepositoryIndexRequest(ready=True))
    index = await call
    assert [(m.name, m.version, m.state) for m in index.models] == [("m", "1", "READY")]
    assert dict(await call.initial_metadata())[REPLICAS_HEADER] == "1/2"


# ---------------------------------------------------------------------------- roles


@pytest.fixture
async def guarded_registry(tmp_path: Path) -> AsyncIterator[str]:
    """A registry that needs admin for deployments: token `a` is admin, `x` only a reader;
    anonymous callers may publish (the replicas and the router watch anonymously)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'guarded.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = registry_settings(
        url,
        tmp_path,
        blob_dir=str(tmp_path / "guarded-blobs"),
        auth=AuthSettings(tokens="a:admin:ops,x:reader:xavier", anonymous_role="publisher"),
    )
    app = RegistryApp(settings)
    await app.start()
    async with grpc.aio.insecure_channel(app.address) as channel:
        await publish_versions(registry_pb2_grpc.RegistryServiceStub(channel))
    try:
        yield app.address
    finally:
        await app.stop(2)


async def test_load_and_unload_need_admin_and_act_with_the_callers_credentials(
    guarded_registry: str, tmp_path: Path, tritonclient: TritonClient
) -> None:
    replica = await start_inference(guarded_registry, tmp_path, name="guarded-inf")
    # The router takes `x` for an admin; the registry does not: what the registry says
    # shows that the router acted with the caller's token, not its own.
    router = await start_router(
        guarded_registry,
        [replica.address],
        tmp_path / "xds-guarded",
        auth=AuthSettings(tokens="a:admin,x:admin,r:reader"),
    )
    envoy = await start_envoy(
        tmp_path,
        tmp_path / "xds-guarded",
        inference=[replica.address],
        router=router.address,
        registry=guarded_registry,
        name="envoy-guarded",
    )
    channel = grpc.aio.insecure_channel(envoy.address)
    oip = opb_grpc.GRPCInferenceServiceStub(channel)
    try:
        url = envoy.address
        reader, xavier, admin = {"token": "r"}, {"token": "x"}, {"token": "a"}
        denied, index, anonymous, refused = await tritonclient(
            url, ["load", "m", reader], ["index", reader], ["load", "m"], ["load", "m", xavier]
        )
        assert denied["error"] == "StatusCode.PERMISSION_DENIED", denied
        assert "admin" in denied["message"]
        assert index == {"ok": {}}, index
        assert anonymous["error"] == "StatusCode.UNAUTHENTICATED", anonymous
        assert refused["error"] == "StatusCode.PERMISSION_DENIED", refused
        assert "registry" in refused["message"] and "xavier" in refused["message"], refused

        for rpc, request in [
            (oip.RepositoryModelLoad, opb.RepositoryModelLoadRequest(model_name="m")),
            (oip.RepositoryModelUnload, opb.RepositoryModelUnloadRequest(model_name="m")),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rpc(request, metadata=(("authorization", "Bearer r"),))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for path in ("/v2/repository/models/m/load", "/v2/repository/models/m/unload"):
            reply = await http(url, "POST", path, {}, token="r")
            assert reply.status == 403, (path, reply)
            assert "admin" in reply.json()["error"]
        reply = await http(url, "POST", "/v2/repository/models/m/load", {}, token="x")
        assert reply.status == 403, reply
        reply = await http(url, "GET", "/v2/models/stats", token="r")
        assert (reply.status, reply.json()) == (200, {"model_stats": []}), reply

        loaded, unloaded = await tritonclient(url, ["load", "m", admin], ["unload", "m", admin])
        assert loaded == {"ok": None} and unloaded == {"ok": None}, (loaded, unloaded)
        reply = await http(url, "POST", "/v2/repository/models/m/load", {}, token="a")
        assert reply.status == 200, reply
        async with grpc.aio.insecure_channel(replica.address) as direct:
            ready = await opb_grpc.GRPCInferenceServiceStub(direct).ModelReady(
                opb.ModelReadyRequest(name="m", version="3")
            )
        assert ready.ready
    finally:
        await channel.close()
        await envoy.stop()
        await router.stop(0)
        await replica.stop(0)


# ------------------------------------------------------------- combining answers


def _entry(version: int, state: str, reason: str = "", pinned: bool = False) -> triton.ReplicaEntry:
    return triton.ReplicaEntry("m", version, triton.State[state], reason, pinned)


def test_index_is_ready_where_the_deployment_wants_it_everywhere() -> None:
    answers = {
        "a": [_entry(1, "READY", pinned=True), _entry(2, "READY")],
        "b": [_entry(1, "LOADING", pinned=True), _entry(3, "FAILED", "bad graph")],
    }
    rows = triton.merge_index(answers, {("m", 4)})
    assert rows == [
        triton.IndexRow("m", 1, "LOADING", "ready on 1 of 2 replicas; b: loading"),
        triton.IndexRow("m", 2, "READY"),  # loaded on demand: ready where it is loaded
        triton.IndexRow("m", 3, "UNAVAILABLE", "b: bad graph"),
        triton.IndexRow("m", 4, "LOADING", "a: not loaded"),  # deployed, not started yet
    ]
    assert triton.merge_index(answers, {("m", 4)}, ready_only=True) == [rows[1]]


def test_statistics_add_up_per_version_and_batch_size() -> None:
    a = opb.ModelStatistics(
        name="m", version="2", last_inference=7, inference_count=3, execution_count=2
    )
    a.inference_stats.success.count, a.inference_stats.success.ns = 2, 200
    a.batch_stats.add(batch_size=1).compute_infer.count = 1
    a.batch_stats.add(batch_size=2).compute_infer.count = 1
    b = opb.ModelStatistics(
        name="m", version="2", last_inference=5, inference_count=1, execution_count=1
    )
    b.inference_stats.success.count, b.inference_stats.success.ns = 1, 50
    b.inference_stats.fail.count = 1
    b.batch_stats.add(batch_size=1).compute_infer.ns = 9
    other = opb.ModelStatistics(name="m", version="10", inference_count=4)
    summed = triton.sum_statistics([[a], [other, b]])
    assert [(s.name, s.version) for s in summed] == [("m", "2"), ("m", "10")]
    total = summed[0]
    assert (total.last_inference, total.inference_count, total.execution_count) == (7, 4, 3)
    assert (total.inference_stats.success.count, total.inference_stats.success.ns) == (3, 250)
    assert total.inference_stats.fail.count == 1
    assert [
        (s.batch_size, s.compute_infer.count, s.compute_infer.ns) for s in total.batch_stats
    ] == [
        (1, 1, 9),
        (2, 1, 0),
    ]
    assert summed[1] == other
