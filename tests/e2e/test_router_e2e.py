"""End to end, as separate processes: registry, two inference servers, monitor, router and
Envoy (routing by the configuration the router writes), with tritonclient (an unmodified
Open Inference Protocol client) talking to Envoy.

Shows a 50/50 sticky split (each user's variant is the one `hash(salt, user)` gives,
computed here, in another process, while Envoy's routing filter computed it there), a shadow
comparison joined at the monitor from the events of both inference servers, and outcomes
attributed per variant at the monitor. tritonclient runs in a subprocess: its protobuf
symbols collide with ModelHub's generated `inference` package in one process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.router.bucketing import Ranges, bucket
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload
from tests.service.router.helpers import EnvoyProcess, start_envoy

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SALT = "e2e-salt"
USERS = 400

CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as triton

url, users = sys.argv[1], int(sys.argv[2])
client = triton.InferenceServerClient(url)
assert client.is_server_live()
metadata = client.get_server_metadata()
assert metadata.name == "modelhub-inference", metadata
model = client.get_model_metadata("ab")
assert [i.name for i in model.inputs] == ["x"], model
served = {}
for rounds in range(2):
    for user in range(users):
        x = triton.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.full((1, 4), user, dtype=np.float32))
        result = client.infer(
            "ab", [x], request_id=f"r{rounds}-{user}", headers={"x-user-id": str(user)}
        )
        response = result.get_response()
        params = {k: v.string_param for k, v in response.parameters.items()}
        y = result.as_numpy("y")
        entry = {
            "variant": params["modelhub.variant"],
            "version": int(response.model_version),
            "delta": float(y[0, 0] - user),
            "id": response.id,
        }
        served.setdefault(str(user), []).append(entry)
print(json.dumps(served))
"""


class Process:
    """A ModelHub service started as `python -m modelhub.<service>`."""

    def __init__(self, name: str, module: str, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.ready = tmp / f"{name}.ready.json"
        self.log = tmp / f"{name}.log"
        prefix = f"MODELHUB_{module.upper()}_"
        full_env = {
            **os.environ,
            f"{prefix}PORT": "0",
            f"{prefix}METRICS_PORT": "-1",
            f"{prefix}READY_FILE": str(self.ready),
            f"{prefix}GRACE_PERIOD_S": "1",
            "MODELHUB_LOG_FORMAT": "text",
            **{f"{prefix}{k}": v for k, v in env.items()},
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"modelhub.{module}"],
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115
        )
        self.address = ""

    async def wait_ready(self) -> str:
        for _ in range(600):
            if self.ready.exists():
                port = json.loads(self.ready.read_text())["port"]
                self.address = f"127.0.0.1:{port}"
                return self.address
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                return -9
        return self.process.returncode


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


def _migrate(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True, capture_output=True)


async def test_router_end_to_end_with_tritonclient(
    tmp_path: Path, processes: list[Process]
) -> None:
    registry_db = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    monitor_db = f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"
    await asyncio.gather(
        asyncio.to_thread(_migrate, "modelhub.registry.migrate", "upgrade", "--url", registry_db),
        asyncio.to_thread(
            _migrate, "modelhub.monitor.migrate", "--database-url", monitor_db, "upgrade"
        ),
    )
    registry = Process(
        "registry",
        "registry",
        {"DATABASE_URL": registry_db, "BLOB_DIR": str(tmp_path / "blobs")},
        tmp_path,
    )
    monitor = Process("monitor", "monitor", {"DATABASE_URL": monitor_db}, tmp_path)
    processes += [registry, monitor]
    registry_address, monitor_address = await asyncio.gather(
        registry.wait_ready(), monitor.wait_ready()
    )

    async with grpc.aio.insecure_channel(registry_address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for value in (1.0, 2.0, 3.0):  # version v answers y = x + v
            await upload(stub, "m", add_constant(value))
        await stub.CreateEndpoint(
            rpb.CreateEndpointRequest(
                endpoint_id="ab",
                endpoint=rpb.Endpoint(
                    sticky_key=rpb.StickyKey(source=rpb.StickyKey.METADATA, name="x-user-id"),
                    salt=SALT,
                    variants=[
                        rpb.Variant(
                            name="a",
                            model="models/m",
                            selector=rpb.VersionSelector(version=1),
                            weight=50,
                        ),
                        rpb.Variant(
                            name="b",
                            model="models/m",
                            selector=rpb.VersionSelector(version=2),
                            weight=50,
                        ),
                    ],
                    shadows=[
                        rpb.Shadow(
                            name="next",
                            model="models/m",
                            selector=rpb.VersionSelector(version=3),
                            sample_rate=1.0,
                        )
                    ],
                    fallback="a",
                ),
            )
        )

    inference = [
        Process(
            f"inference-{i}",
            "inference",
            {
                "REGISTRY_ADDRESS": registry_address,
                "CACHE_DIR": str(tmp_path / f"cache-{i}"),
                "MONITOR_ADDRESS": monitor_address,
                "EVENT_FLUSH_INTERVAL_S": "0.2",
            },
            tmp_path,
        )
        for i in (1, 2)
    ]
    processes += inference
    backends = await asyncio.gather(*(p.wait_ready() for p in inference))
    router = Process(
        "router",
        "router",
        {
            "REGISTRY_ADDRESS": registry_address,
            "BACKENDS": ",".join(backends),
            "MONITOR_ADDRESS": monitor_address,
            "ENVOY_CONFIG_DIR": str(tmp_path / "xds"),
        },
        tmp_path,
    )
    processes.append(router)
    router_address = await router.wait_ready()
    proxy = await start_envoy(
        tmp_path,
        tmp_path / "xds",
        inference=backends,
        router=router_address,
        registry=registry_address,
        monitor=monitor_address,
    )
    try:
        await _through_envoy(proxy, registry_address, monitor_address)
    finally:
        await proxy.stop()
    # Graceful shutdown on SIGTERM.
    assert router.stop() == 0, router.log.read_text()


async def _through_envoy(proxy: EnvoyProcess, registry_address: str, monitor_address: str) -> None:
    front = proxy.address

    async with grpc.aio.insecure_channel(front) as channel:
        admin = router_pb2_grpc.RouterServiceStub(channel)  # through Envoy, like any client
        for _ in range(200):
            if (await admin.GetRoutingTable(pb.GetRoutingTableRequest())).endpoints:
                break
            await asyncio.sleep(0.05)
        await proxy.wait_route("endpoint-ab")

        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", CLIENT, front, str(USERS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        served = json.loads(done.stdout)

        # Sticky 50/50 split: each user got the variant hash(salt, user) gives, both times.
        ranges = Ranges([50, 50])
        for user, answers in served.items():
            expected = "ab"[ranges.pick(bucket(SALT, user))]
            assert [a["variant"] for a in answers] == [expected, expected], user
            version = {"a": 1, "b": 2}[expected]
            assert all(a["version"] == version and a["delta"] == version for a in answers)
        share_a = sum(a[0]["variant"] == "a" for a in served.values()) / USERS
        assert 0.40 <= share_a <= 0.60, share_a

        # Both inference servers took traffic (Envoy balances least-request between them).
        served_by = proxy.upstream_requests("inference")
        assert all(count > 0 for count in served_by.values()) and len(served_by) == 2, served_by

        async with grpc.aio.insecure_channel(monitor_address) as monitor_channel:
            monitor_api = monitor_pb2_grpc.MonitorServiceStub(monitor_channel)
            # Inference reported every request: wait until the monitor has them all.
            for _ in range(200):
                stats = await monitor_api.GetStats(
                    mpb.GetStatsRequest(
                        key=mpb.SeriesKey(endpoint="endpoints/ab"), window_seconds=300
                    )
                )
                if stats.requests >= 2 * USERS:
                    break
                await asyncio.sleep(0.05)
            assert stats.requests == 2 * USERS

            # Outcomes: users of variant b convert; the router forwards them to the
            # monitor, which attributes them to the variant that served the request id.
            for answers in served.values():
                for answer in answers:
                    outcome = await admin.RecordOutcome(
                        pb.RecordOutcomeRequest(
                            request_id=answer["id"],
                            value=1.0 if answer["variant"] == "b" else 0.0,
                        )
                    )
                    assert outcome.attributed and outcome.forwarded

            report = mpb.ExperimentReport()
            for _ in range(200):
                report = await monitor_api.GetExperimentReport(
                    mpb.GetExperimentReportRequest(endpoint="endpoints/ab", window_seconds=300)
                )
                if sum(v.outcomes for v in report.variants) == 2 * USERS:
                    break
                await asyncio.sleep(0.05)
            rates = {v.variant: (v.outcomes, v.outcome_rate) for v in report.variants}
            count_b = sum(a[0]["variant"] == "b" for a in served.values())
            assert rates == {"a": (2 * (USERS - count_b), 0.0), "b": (2 * count_b, 1.0)}

            # Every request was mirrored (rate 1.0) and every mirror joined its primary at
            # the monitor (shadow copies run at background priority: they may come last).
            shadows = mpb.ShadowReport()
            for _ in range(400):
                shadows = await monitor_api.GetShadowReport(
                    mpb.GetShadowReportRequest(endpoint="endpoints/ab", window_seconds=300)
                )
                if shadows.shadows and shadows.shadows[0].compared == 2 * USERS:
                    break
                await asyncio.sleep(0.05)
            (summary,) = shadows.shadows
            assert summary.shadow == "next" and summary.version == 3
            assert summary.compared == 2 * USERS and summary.failed == 0
            # Version 3 answers x + 3: 2 away from variant a (x + 1), 1 from b (x + 2).
            assert summary.max_abs_diff_max == pytest.approx(2.0, rel=0.02)
