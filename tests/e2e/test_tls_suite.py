"""`make up --mtls` as real processes: the front door terminates TLS with the local CA's
certificate, every service requires a client certificate, Envoy and the services reach each
other over mutual TLS, and the stack's own clients (health checks, demo registration, demo
traffic, the monitor's reports) work with it on."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.devstack.stack import demo_report, demo_traffic
from tests.e2e.suite import running_suite

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("front-door")]


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


async def test_the_suite_with_mutual_tls(tmp_path: Path) -> None:
    async with running_suite(tmp_path, mtls=True) as suite:
        certs = suite.config.certs()
        assert certs is not None
        # Demo traffic through the TLS front door, trusting the local CA.
        served = await demo_traffic(suite.front, users=20, ca_file=certs.ca)
        assert sum(served.values()) == 20
        assert set(served) <= {"champion", "challenger"}
        # Inference reported it to the monitor (in batches), which answers over mutual TLS.
        monitor = f"127.0.0.1:{suite.ports.monitor}"
        for _ in range(100):
            report = await demo_report(monitor, suite.config.service_tls())
            if any(line.startswith("experiment ") for line in report):
                break
            await asyncio.sleep(0.2)
        assert any(line.startswith("experiment ") for line in report), report
        # Plaintext to a service, or to the front door: refused.
        for port in (suite.ports.registry, suite.ports.inference, suite.ports.envoy):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=5
                    )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, port
        # Envoy's ops listener stays plaintext for probes and scrapes.
        url = f"http://127.0.0.1:{suite.ports.envoy_ops}/stats/prometheus"
        text = await asyncio.to_thread(_fetch, url)
        assert "envoy_cluster_ssl_handshake" in text
