"""RouterService.ListReplicas against real inference servers: two serving (one reached
through a DNS name), one stopped, one that accepts connections but never answers; what
each holds (versions, state, device, memory), filters, argument checks, and the same answer
as JSON through the front door."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.inference.main import InferenceApp
from modelhub.router.main import RouterApp
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import start_inference, start_router, wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("envoy")]

BUDGET = 512 << 20


@pytest.fixture
async def silent_address() -> AsyncIterator[str]:
    """A port that accepts connections and never says a word (a hung replica)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()


@pytest.fixture
async def replicas(
    registry_api: registry_pb2_grpc.RegistryServiceStub, registry_address: str, tmp_path: Path
) -> AsyncIterator[tuple[InferenceApp, InferenceApp, str]]:
    """Two inference servers keeping m version 1 loaded (a deployment), the first also
    holding version 2 (loaded explicitly), and the address of a third that was stopped."""
    await registry_api.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment_id="m-one",
            deployment=rpb.Deployment(model="models/m", versions=[rpb.VersionSelector(version=1)]),
        )
    )
    first = await start_inference(registry_address, tmp_path, "first", memory_budget_bytes=BUDGET)
    second = await start_inference(registry_address, tmp_path, "second")
    stopped = await start_inference(registry_address, tmp_path, "stopped")
    gone = stopped.address
    await stopped.stop(0)
    async with grpc.aio.insecure_channel(first.address) as channel:
        stub = ipb_grpc.ModelRepositoryServiceStub(channel)
        await stub.LoadModel(ipb.LoadModelRequest(model="m", version="2"))
    for app in (first, second):

        async def loaded(app: InferenceApp = app) -> bool:
            return any(e.model == "m" and e.version == 1 and e.state.name == "READY"
                       for e in app.service.index())  # fmt: skip

        await wait_for(loaded, 30)
    yield first, second, gone
    await first.stop(0)
    await second.stop(0)


def _by_address(answer: pb.ListReplicasResponse) -> dict[str, pb.Replica]:
    return {r.address: r for r in answer.replicas}


async def test_every_replica_with_what_it_holds(
    replicas: tuple[InferenceApp, InferenceApp, str],
    registry_address: str,
    silent_address: str,
    tmp_path: Path,
) -> None:
    first, second, gone = replicas
    # The second through a DNS name: listed under the address it resolves to.
    port = second.address.rsplit(":", 1)[1]
    pool = [first.address, f"localhost:{port}", gone, silent_address]
    router: RouterApp = await start_router(
        registry_address, pool, tmp_path / "xds", replica_timeout_s=1.5
    )
    try:
        async with grpc.aio.insecure_channel(router.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            loop = asyncio.get_running_loop()
            began = loop.time()
            answer = await stub.ListReplicas(pb.ListReplicasRequest(), timeout=10)
            took = loop.time() - began
            assert took < 5, took  # the silent replica costs the deadline, not more

            assert [r.address for r in answer.replicas] == [
                first.address, f"127.0.0.1:{port}", gone, silent_address,
            ]  # fmt: skip
            found = _by_address(answer)
            one = found[first.address]
            assert one.health == pb.SERVING and one.reason == ""
            assert one.devices[-1] == "cpu" and one.server_version
            assert one.memory_budget_bytes == BUDGET
            held = {(e.name, e.version): e for e in one.models}
            assert set(held) == {("m", "1"), ("m", "2")}
            assert held[("m", "1")].pinned and not held[("m", "2")].pinned
            for entry in held.values():
                assert entry.state == ipb.READY
                assert entry.device == "cpu"
                assert entry.execution_provider == "CPUExecutionProvider"
                assert entry.memory_bytes > 0
            assert one.memory_used_bytes == sum(e.memory_bytes for e in held.values())
            assert one.observe_time.ToSeconds() > 0

            two = found[f"127.0.0.1:{port}"]
            assert two.health == pb.SERVING
            assert [(e.name, e.version, e.pinned) for e in two.models] == [("m", "1", True)]
            assert two.memory_budget_bytes == second.settings.memory_budget_bytes

            stopped = found[gone]
            assert stopped.health == pb.UNREACHABLE and list(stopped.models) == []
            assert gone in stopped.reason
            silent = found[silent_address]
            assert silent.health == pb.UNREACHABLE
            assert "within" in silent.reason or "DEADLINE" in silent.reason

            # Filters keep every replica and only the matching versions.
            only = await stub.ListReplicas(
                pb.ListReplicasRequest(model="models/m", version="2"), timeout=10
            )
            assert [len(r.models) for r in only.replicas] == [1, 0, 0, 0]
            bare = await stub.ListReplicas(pb.ListReplicasRequest(model="m"), timeout=10)
            assert [len(r.models) for r in bare.replicas] == [2, 1, 0, 0]
            none = await stub.ListReplicas(pb.ListReplicasRequest(model="other"), timeout=10)
            assert [len(r.models) for r in none.replicas] == [0, 0, 0, 0]

            # A caller's shorter deadline bounds the calls to the replicas.
            answer = await stub.ListReplicas(pb.ListReplicasRequest(), timeout=0.8)
            assert _by_address(answer)[silent_address].health == pb.UNREACHABLE

            for bad in (
                pb.ListReplicasRequest(version="1"),
                pb.ListReplicasRequest(model="models/Bad!"),
                pb.ListReplicasRequest(model="m", version="latest"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.ListReplicas(bad, timeout=10)
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await router.stop(0)


async def test_replicas_as_json_through_the_front_door(
    front_doors: FrontDoorFactory, inference: InferenceApp
) -> None:
    door = await front_doors()

    def get() -> dict[str, object]:
        url = f"http://{door.envoy.address}/v1/router/replicas?model=m"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return dict(json.loads(reply.read()))

    answer = await asyncio.to_thread(get)
    (replica,) = answer["replicas"]  # type: ignore[misc]
    assert replica["address"] == inference.address
    assert replica["health"] == "SERVING"
    assert replica["devices"][-1] == "cpu"
    assert int(replica["memory_budget_bytes"]) == inference.settings.memory_budget_bytes
    assert isinstance(replica["models"], list)
