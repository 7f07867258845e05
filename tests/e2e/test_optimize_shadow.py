"""`modelhub versions optimize --shadow-on`: the int8 derivative of the demo champion
shadows the parent on endpoint `fraud`, and the monitor's shadow comparison measures it on
live traffic through Envoy."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.client import RegistryClient
from modelhub.devstack.stack import demo_traffic
from tests.e2e.suite import running_suite

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("optimize-shadow")]


async def test_derivative_shadows_its_parent_on_live_traffic(tmp_path: Path) -> None:
    async with running_suite(tmp_path / "suite") as suite:
        # Every primary on the parent (champion, v1) first, so that the derivative's
        # comparisons are all with its parent.
        async with RegistryClient(f"127.0.0.1:{suite.ports.registry}") as client:
            endpoint = await client.get_endpoint("fraud")
            for variant in endpoint.variants:
                variant.weight = 100 if variant.name == "champion" else 0
            await client.apply_endpoint("fraud", endpoint)
        for _ in range(30):
            if await demo_traffic(suite.front, users=20) == {"champion": 20}:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the endpoint never routed everyone to the champion")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelhub.cli",
            "--registry", f"127.0.0.1:{suite.ports.registry}",
            "versions", "optimize", "fraud@champion", "--method", "dynamic-int8",
            "--rows", "256", "--shadow-on", "fraud",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        text = out.decode()
        assert (
            "registered models/fraud/versions/3 (dynamic-int8 of models/fraud/versions/1)" in text
        )
        assert "shadow 'dynamicint8-v3' on endpoints/fraud at 1" in text
        assert "deployed by deployments/fraud" in text

        monitor = f"127.0.0.1:{suite.ports.monitor}"
        async with grpc.aio.insecure_channel(monitor) as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            for _ in range(60):
                await demo_traffic(suite.front, users=20)
                report = await stub.GetShadowReport(
                    mpb.GetShadowReportRequest(endpoint="endpoints/fraud", window_seconds=300),
                    timeout=10,
                )
                by_name = {s.shadow: s for s in report.shadows}
                derivative = by_name.get("dynamicint8-v3")
                if derivative is not None and derivative.compared >= 20:
                    break
                await asyncio.sleep(1)
            else:
                pytest.fail(f"the derivative's shadow was never compared: {report}")
        assert derivative.version == 3
        # int8 weights move the parent's probabilities a little, never far.
        assert 0 <= derivative.max_abs_diff_max < 0.2
        assert derivative.agreement_rate > 0.9
