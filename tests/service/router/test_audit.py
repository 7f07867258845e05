"""The payload audit log through the front door: registry → inference (the endpoint's audit
policy, from the Watch stream) → monitor, with Envoy in front. At a sample rate of 1 every
request has its record (variant, version, status, caller, trace id, payloads; errors with
their status), readable over gRPC, as JSON through Envoy and with the CLI; redacted inputs
are never recorded; rate 0 records nothing; and a monitor that is down costs the requests
nothing: records are dropped and counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from prometheus_client import generate_latest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.events import DROP_UNREACHABLE
from modelhub.common.settings import AuthSettings
from modelhub.inference.main import InferenceApp
from tests.cli import run_cli
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    by_user,
    create_endpoint,
    infer_request,
    monitor_stub,
    output,
    params,
    start_inference,
    start_monitor,
    variant,
    wait_for,
)
from tests.service.router.test_rest import http

Stub = registry_pb2_grpc.RegistryServiceStub
TOKENS = "tok-alice:reader:alice,tok-ops:admin:ops"
USERS = 12


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Any]:
    app = await start_monitor(tmp_path)
    yield app
    await app.stop(0)


async def deploy(stub: Stub, *versions: int) -> None:
    """Keep these versions of m loaded (with authentication on, a reader's request does
    not load a version on demand)."""
    await stub.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment_id="m",
            deployment=rpb.Deployment(
                model="models/m", versions=[rpb.VersionSelector(version=v) for v in versions]
            ),
        )
    )


async def auditing_inference(
    registry_address: str, tmp_path: Path, monitor_address: str, **overrides: Any
) -> InferenceApp:
    app = await start_inference(
        registry_address,
        tmp_path,
        name="auditing",
        monitor_address=monitor_address,
        audit_flush_interval_s=0.1,
        # Callers with a token are named; the router's probes come without one.
        auth=AuthSettings(tokens=TOKENS, anonymous_role="reader"),
        **overrides,
    )
    await wait_for(app.service.ready, 20.0)  # the deployed versions are loaded
    return app


async def set_audit(stub: Stub, endpoint: str, rate: float, *redact: str) -> None:
    await stub.UpdateEndpoint(
        rpb.UpdateEndpointRequest(
            endpoint=rpb.Endpoint(
                name=f"endpoints/{endpoint}",
                audit=rpb.AuditPolicy(sample_rate=rate, redact_inputs=list(redact)),
            ),
            update_mask=FieldMask(paths=["audit"]),
        )
    )


def _trace_id(i: int) -> str:
    return f"{i + 1:032x}"


async def test_every_request_has_its_record_at_rate_one(
    registry_api: Stub,
    registry_address: str,
    front_doors: FrontDoorFactory,
    monitor: Any,
    tmp_path: Path,
) -> None:
    await deploy(registry_api, 1, 2)
    inference = await auditing_inference(registry_address, tmp_path, monitor.runtime.address)
    try:
        await create_endpoint(
            registry_api, "aud", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
        )
        await set_audit(registry_api, "aud", 1.0)
        door = await front_doors(backends=[inference.address], monitor=monitor.runtime.address)
        await door.envoy.wait_route("endpoint-aud")
        await wait_for(lambda: inference.audit_policies.get("endpoints/aud") is not None)

        sent: dict[str, tuple[str, list[float]]] = {}
        for i in range(USERS):
            x = np.full((1, 4), i + 0.5, np.float32)
            response = await door.clients.oip.ModelInfer(
                infer_request("aud", x, request_id=f"q{i}"),
                metadata=(
                    ("x-user-id", str(i)),
                    ("authorization", "Bearer tok-alice"),
                    ("traceparent", f"00-{_trace_id(i)}-00f067aa0ba902b7-01"),
                ),
            )
            name = params(response)["modelhub.variant"]
            assert output(response).tolist() == (x + {"a": 1, "b": 2}[name]).ravel().tolist()
            sent[f"q{i}"] = (name, x.ravel().tolist())
        assert {name for name, _ in sent.values()} == {"a", "b"}
        # A request inference refuses is recorded with its status.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await door.clients.oip.ModelInfer(
                infer_request("aud", np.ones((1, 3)), request_id="bad"),
                metadata=(("x-user-id", "0"), ("authorization", "Bearer tok-ops")),
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # REST goes through the same path (anonymous this time).
        rest = await http(
            door.envoy.address,
            "POST",
            "/v2/models/aud/infer",
            {
                "id": "rest-1",
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [7] * 4}],
            },
            {"x-user-id": "1"},
        )
        assert rest.status == 200, rest.body

        async with grpc.aio.insecure_channel(monitor.runtime.address) as channel:
            stub = monitor_stub(channel)

            async def records(**filters: Any) -> list[mpb.AuditRecord]:
                found: list[mpb.AuditRecord] = []
                request = mpb.ListAuditRecordsRequest(page_size=5, **filters)
                while True:
                    page = await stub.ListAuditRecords(request)
                    found += page.records
                    if not page.next_page_token:
                        return found
                    request.page_token = page.next_page_token

            async def all_there() -> bool:
                return len(await records(endpoint="aud")) == USERS + 2

            await wait_for(all_there, 15.0)
            listed = await records(endpoint="endpoints/aud")
            times = [r.time.ToNanoseconds() for r in listed]
            assert times == sorted(times, reverse=True)  # newest first
            assert all(not r.inputs and not r.outputs for r in listed)  # summaries
            by_id = {r.request_id: r for r in listed}
            assert set(by_id) == {*sent, "bad", "rest-1"}

            for i, (request_id, (name, values)) in enumerate(sent.items()):
                summary = by_id[request_id]
                record = await stub.GetAuditRecord(mpb.GetAuditRecordRequest(request_id=request_id))
                version = {"a": 1, "b": 2}[name]
                assert (record.endpoint, record.variant) == ("endpoints/aud", name)
                assert (record.model, record.version) == ("models/m", version)
                assert (record.status_code, record.status_message) == (0, "")
                assert (record.caller, record.caller_role) == ("alice", "reader")
                assert record.trace_id == _trace_id(i)
                assert not record.truncated and record.size_bytes == summary.size_bytes > 0
                (x_rec,) = record.inputs
                assert (x_rec.name, x_rec.datatype, list(x_rec.shape)) == ("x", "FP32", [1, 4])
                assert list(x_rec.data) == values and not x_rec.redacted
                (y_rec,) = record.outputs
                assert list(y_rec.data) == [v + version for v in values]

            bad = await stub.GetAuditRecord(mpb.GetAuditRecordRequest(request_id="bad"))
            assert bad.status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "shape" in bad.status_message
            assert (bad.caller, bad.caller_role) == ("ops", "admin")
            assert len(bad.inputs) == 1 and not bad.outputs
            assert (
                await stub.GetAuditRecord(mpb.GetAuditRecordRequest(request_id="rest-1"))
            ).caller == ("anonymous")
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetAuditRecord(mpb.GetAuditRecordRequest(request_id="nobody"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND

            # The same records as JSON through Envoy (transcoded), by time range and id.
            since = datetime.fromtimestamp(times[-1] / 1e9, UTC).isoformat().replace("+00:00", "Z")
            answer = await http(
                door.envoy.address,
                "GET",
                f"/v1/audit/records?endpoint=aud&start_time={since}&page_size=100"
                "&view=AUDIT_RECORD_VIEW_FULL",
            )
            assert answer.status == 200, answer.body
            document = answer.json()
            assert len(document["records"]) == USERS + 2
            assert document["records"][0]["inputs"][0]["name"] == "x"
            answer = await http(door.envoy.address, "GET", "/v1/audit/records/q0")
            assert answer.status == 200, answer.body
            q0 = answer.json()
            assert q0["inputs"][0] == {
                "name": "x",
                "datatype": "FP32",
                "shape": ["1", "4"],
                "data": [0.5] * 4,
                "redacted": False,
                "truncated": False,
            }
            assert (await http(door.envoy.address, "GET", "/v1/audit/records/nobody")).status == 404

            # The CLI lists and gets them too.
            address = monitor.runtime.address
            code, out, err = await run_cli(
                "audit", "list", "--endpoint", "aud", "--monitor", address
            )
            assert code == 0, err
            lines = out.splitlines()
            assert lines[0].split()[:4] == ["TIME", "(UTC)", "REQUEST", "ID"]
            assert len(lines) == USERS + 3 and any(" bad " in line for line in lines)
            code, out, err = await run_cli("audit", "get", "q1", "--monitor", address)
            assert code == 0, err
            assert json.loads(out)["inputs"][0]["data"] == [1.5] * 4

            # Redacted inputs are never recorded (policy changed with the CLI).
            code, out, err = await run_cli(
                "--registry", registry_address,
                "endpoints", "audit", "aud", "--sample-rate", "1", "--redact", "x",
            )  # fmt: skip
            assert code == 0, err
            assert "audit 1 redact=x" in out

            def redacting() -> bool:
                policy = inference.audit_policies.get("endpoints/aud")
                return policy is not None and "x" in policy.redact_inputs

            await wait_for(redacting)
            secret = np.full((1, 4), 4242.0, np.float32)
            await door.clients.oip.ModelInfer(
                infer_request("aud", secret, request_id="secret"), metadata=(("x-user-id", "3"),)
            )

            async def secret_recorded() -> bool:
                return any(r.request_id == "secret" for r in await records(endpoint="aud"))

            await wait_for(secret_recorded, 15.0)
            record = await stub.GetAuditRecord(mpb.GetAuditRecordRequest(request_id="secret"))
            (x_rec,) = record.inputs
            assert x_rec.redacted and not x_rec.data.values and list(x_rec.shape) == [1, 4]
            assert "4242" not in str(x_rec)
            assert record.outputs  # outputs are recorded

        # Rate 0: nothing is recorded (decided on the request path: no record is built).
        code, _, err = await run_cli(
            "--registry", registry_address, "endpoints", "audit", "aud", "--sample-rate", "0"
        )  # fmt: skip
        assert code == 0, err
        await wait_for(lambda: inference.audit_policies.get("endpoints/aud") is None)
        audit = inference.audit
        assert audit is not None
        before = (audit.sent, audit.dropped, audit.buffered)
        for i in range(5):
            await door.clients.infer("aud", user=str(i))
        assert (audit.sent, audit.dropped, audit.buffered) == before
    finally:
        await inference.stop(0)


async def test_a_monitor_that_is_down_costs_the_requests_nothing(
    registry_api: Stub, registry_address: str, front_doors: FrontDoorFactory, tmp_path: Path
) -> None:
    monitor = await start_monitor(tmp_path)
    address = monitor.runtime.address
    await monitor.stop(0)
    await deploy(registry_api, 1)
    inference = await auditing_inference(registry_address, tmp_path, address, monitor_timeout_s=2.0)
    try:
        await create_endpoint(registry_api, "aud", [variant("a", 1, 1)])
        await set_audit(registry_api, "aud", 1.0)
        door = await front_doors(backends=[inference.address])
        await door.envoy.wait_route("endpoint-aud")
        await wait_for(lambda: inference.audit_policies.get("endpoints/aud") is not None)
        audit = inference.audit
        assert audit is not None
        for _ in range(40):
            response = await door.clients.infer("aud")
            assert params(response)["modelhub.variant"] == "a"
            assert output(response).tolist() == [2.0] * 4
        # Every record was built, then dropped (counted) when the monitor could not be
        # reached; nothing stays buffered.
        await wait_for(
            lambda: audit.dropped_by_reason[DROP_UNREACHABLE] == 40 and audit.buffered == 0, 15.0
        )
        assert audit.sent == 0 and audit.buffered_bytes == 0
        metrics = generate_latest(inference.runtime.metrics_registry).decode()
        assert (
            'modelhub_inference_audit_records_dropped_total{reason="monitor_unreachable"} 40.0'
            in metrics
        )
    finally:
        await inference.stop(0)
