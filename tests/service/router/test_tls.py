"""TLS on the front door and mutual TLS behind it, with real clients: grpcurl, curl,
tritonclient (gRPC and HTTP) and grpc's own channels against Envoy terminating TLS; a
suite whose registry, inference and router require client certificates (MODELHUB_TLS_*),
reached by Envoy over mutual TLS and probed by the router over it."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common import healthcheck
from modelhub.common.channels import service_channel
from modelhub.common.settings import TlsSettings
from modelhub.devstack import devcerts
from modelhub.inference.main import InferenceApp
from modelhub.registry.main import RegistryApp
from modelhub.registry.migrate import upgrade
from modelhub.router import xds
from modelhub.router.main import RouterApp
from tests.conftest import registry_settings
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    FEATURES,
    EnvoyProcess,
    create_endpoint,
    infer_request,
    output,
    params,
    publish_versions,
    start_envoy,
    start_inference,
    start_router,
    variant,
    wait_for,
)

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
CURL = shutil.which("curl") or "curl"
TRITON_SCRIPT = Path(__file__).with_name("triton_tls_script.py")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> devcerts.LocalCerts:
    """A local CA, the front door's pair, the services' pair and a client pair."""
    return devcerts.ensure(tmp_path_factory.mktemp("tls"))


def front_door_tls(certs: devcerts.LocalCerts, **more: str) -> dict[str, str]:
    return {"tls_cert_file": str(certs.server.cert), "tls_key_file": str(certs.server.key)} | more


def service_tls(certs: devcerts.LocalCerts) -> TlsSettings:
    return TlsSettings(
        ca_file=str(certs.ca), cert_file=str(certs.service.cert), key_file=str(certs.service.key)
    )


async def run(*command: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def tls_channel(
    address: str, certs: devcerts.LocalCerts, *, client: bool = False
) -> grpc.aio.Channel:
    pair = certs.client if client else None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=pair.key.read_bytes() if pair else None,
        certificate_chain=pair.cert.read_bytes() if pair else None,
    )
    return grpc.aio.secure_channel(address, credentials)


INFER_JSON = json.dumps(
    {
        "model_name": "m",
        "model_version": "2",
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1, FEATURES],
                "contents": {"fp32_contents": [1, 2, 3, 4]},
            }
        ],
    }
)


# --------------------------------------------------------------- TLS on the front door


async def test_grpcurl_and_grpc_over_tls_and_plaintext_refused(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    front_doors: FrontDoorFactory,
    certs: devcerts.LocalCerts,
) -> None:
    door = await front_doors(envoy=front_door_tls(certs), reflect_all=True)
    front = door.envoy.address
    code, out, err = await run(GRPCURL, "-cacert", str(certs.ca), front, "list")
    assert code == 0, err
    assert "inference.GRPCInferenceService" in out.split()
    code, out, err = await run(
        GRPCURL, "-cacert", str(certs.ca), "-d", INFER_JSON, front,
        "inference.GRPCInferenceService/ModelInfer",
    )  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["model_name"], answer["model_version"]) == ("m", "2")
    # Typed contents in, typed contents out: y = x + 2.
    assert answer["outputs"][0]["contents"]["fp32_contents"] == [3, 4, 5, 6]

    # grpc's own client, trusting the CA.
    async with tls_channel(front, certs) as channel:
        response = await opb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            infer_request("m", version="1"), timeout=10
        )
        assert output(response).tolist() == [2.0] * FEATURES

    # Plaintext on the TLS port: no answer but a failed connection.
    async with grpc.aio.insecure_channel(front) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await opb_grpc.GRPCInferenceServiceStub(channel).ServerLive(
                opb.ServerLiveRequest(), timeout=5
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    code, _, _ = await run(GRPCURL, "-plaintext", "-max-time", "5", front, "list")
    assert code != 0
    # A client that does not trust the CA refuses the server.
    code, _, err = await run(GRPCURL, "-max-time", "5", front, "list")
    assert code != 0 and "certificate" in err.lower()


async def test_curl_rest_over_tls(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    front_doors: FrontDoorFactory,
    certs: devcerts.LocalCerts,
) -> None:
    door = await front_doors(envoy=front_door_tls(certs))
    base = f"https://{door.envoy.address}"
    code, out, err = await run(
        CURL, "-sS", "--cacert", str(certs.ca), "-o", "/dev/null",
        "-w", "%{http_code} %{http_version}", f"{base}/v2/health/ready",
    )  # fmt: skip
    assert code == 0, err
    status, version = out.split()
    assert status == "200"
    assert version == "2"  # ALPN chose h2
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    for http in ("--http1.1", "--http2"):
        code, out, err = await run(
            CURL, "-sS", http, "--cacert", str(certs.ca), "-H", "content-type: application/json",
            "-d", json.dumps(body), f"{base}/v2/models/m/versions/3/infer",
        )  # fmt: skip
        assert code == 0, err
        answer = json.loads(out)
        assert answer["model_version"] == "3"
        assert answer["outputs"][0]["data"] == [4.0, 5.0, 6.0, 7.0]
    # Plaintext HTTP on the TLS port gets no HTTP answer at all.
    code, out, _ = await run(CURL, "-sS", "-m", "5", f"http://{door.envoy.address}/v2/health/ready")
    assert code != 0 and out == ""


async def test_tritonclient_grpc_and_http_over_tls(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    front_doors: FrontDoorFactory,
    certs: devcerts.LocalCerts,
) -> None:
    door = await front_doors(envoy=front_door_tls(certs))
    code, out, err = await run(
        sys.executable, str(TRITON_SCRIPT), door.envoy.address, str(certs.ca), "m", str(FEATURES)
    )
    assert code == 0, err
    answers = json.loads(out)
    # y = x + 3: the model's newest version (no alias), over both protocols.
    expected = [[3.0, 4.0, 5.0, 6.0]]
    for protocol in ("grpc", "http"):
        assert answers[protocol] == {"live": True, "ready": True, "y": expected}, protocol


async def test_front_door_can_require_client_certificates(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    front_doors: FrontDoorFactory,
    certs: devcerts.LocalCerts,
) -> None:
    door = await front_doors(envoy=front_door_tls(certs, tls_client_ca_file=str(certs.ca)))
    front = door.envoy.address
    async with tls_channel(front, certs) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await opb_grpc.GRPCInferenceServiceStub(channel).ServerLive(
                opb.ServerLiveRequest(), timeout=5
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls_channel(front, certs, client=True) as channel:
        response = await opb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            infer_request("m", version="2"), timeout=10
        )
    assert output(response).tolist() == [3.0] * FEATURES
    code, _, _ = await run(
        CURL, "-sS", "-m", "5", "--cacert", str(certs.ca), f"https://{front}/v2/health/ready"
    )
    assert code != 0
    code, out, err = await run(
        CURL, "-sS", "--cacert", str(certs.ca), "--cert", str(certs.client.cert),
        "--key", str(certs.client.key), "-o", "/dev/null", "-w", "%{http_code}",
        f"https://{front}/v2/health/ready",
    )  # fmt: skip
    assert (code, out) == (0, "200"), err


# ------------------------------------------------------------- mutual TLS behind Envoy


@dataclass
class MutualTlsSuite:
    tls: TlsSettings
    registry: RegistryApp
    inference: InferenceApp
    router: RouterApp
    envoy: EnvoyProcess
    registry_stub: registry_pb2_grpc.RegistryServiceStub


@pytest.fixture
async def mtls_suite(certs: devcerts.LocalCerts, tmp_path: Path) -> AsyncIterator[MutualTlsSuite]:
    """Registry, inference and router requiring client certificates, and Envoy reaching
    them (and health-checking them) over mutual TLS; the front door itself is plaintext."""
    tls = service_tls(certs)
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await asyncio.to_thread(upgrade, url)
    registry = RegistryApp(registry_settings(url, tmp_path, tls=tls))
    await registry.start()
    channel = service_channel(registry.address, tls=tls)
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    await publish_versions(stub)
    inference = await start_inference(registry.address, tmp_path, tls=tls)
    router = await start_router(registry.address, [inference.address], tmp_path / "xds", tls=tls)
    proxy = await start_envoy(
        tmp_path,
        tmp_path / "xds",
        inference=[inference.address],
        router=router.address,
        registry=registry.address,
        upstream_tls=xds.UpstreamTls.from_settings(tls),
    )
    try:
        yield MutualTlsSuite(tls, registry, inference, router, proxy, stub)
    finally:
        await proxy.stop()
        await router.stop(0)
        await inference.stop(0)
        await channel.close()
        await registry.stop(1)


async def test_services_require_client_certificates(
    mtls_suite: MutualTlsSuite, certs: devcerts.LocalCerts
) -> None:
    address = mtls_suite.inference.address
    request = health_pb2.HealthCheckRequest()
    # Plaintext, and TLS without a client certificate: refused in the handshake.
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls_channel(address, certs) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
    # With the suite's certificate: served.
    async with service_channel(address, tls=mtls_suite.tls) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # The container health check speaks the same TLS.
    for app in (mtls_suite.registry, mtls_suite.inference, mtls_suite.router):
        assert await asyncio.to_thread(healthcheck.check, app.address, "", 5.0, mtls_suite.tls)
        assert not await asyncio.to_thread(healthcheck.check, app.address, "", 2.0, TlsSettings())


async def test_envoy_reaches_the_services_over_mutual_tls(mtls_suite: MutualTlsSuite) -> None:
    front = mtls_suite.envoy.address
    async with grpc.aio.insecure_channel(front) as channel:
        oip = opb_grpc.GRPCInferenceServiceStub(channel)
        # A plain model name: Envoy → inference over mutual TLS.
        response = await oip.ModelInfer(infer_request("m", version="2"), timeout=10)
        assert output(response).tolist() == [3.0] * FEATURES
        # An endpoint: the router follows the registry over mutual TLS, probes the replica's
        # readiness over it before routing, and Envoy serves the variant.
        await create_endpoint(mtls_suite.registry_stub, "fraud", [variant("a", 1, 100)])
        await mtls_suite.envoy.wait_route("endpoint-fraud", timeout_s=20)
        response = await oip.ModelInfer(infer_request("fraud"), timeout=10)
        assert params(response)["modelhub.variant"] == "a"
        assert output(response).tolist() == [2.0] * FEATURES
        # Registry calls through the front door, also over mutual TLS behind it.
        models = await registry_pb2_grpc.RegistryServiceStub(channel).ListModels(
            rpb.ListModelsRequest(), timeout=10
        )
        assert [m.name for m in models.models] == ["models/m"]

    # Envoy's health checks of every cluster pass over mutual TLS.
    def healthy() -> bool:
        clusters = mtls_suite.envoy._get("/clusters")
        lines = [line for line in clusters.splitlines() if "::health_flags::" in line]
        return bool(lines) and all(line.endswith("::healthy") for line in lines)

    await wait_for(healthy, 15)
    stats = mtls_suite.envoy.stats()
    assert int(stats["cluster.inference.ssl.handshake"]) >= 1
