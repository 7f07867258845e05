"""An endpoint's audit policy (the payload audit log): validated, stored in the endpoint's
spec, updatable on its own, and carried by the Watch stream that inference follows. Runs
on SQLite and on PostgreSQL."""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub


def _endpoint(audit: pb.AuditPolicy | None = None) -> pb.Endpoint:
    endpoint = pb.Endpoint(
        variants=[
            pb.Variant(
                name="a",
                model="models/fraud",
                selector=pb.VersionSelector(version=1),
                weight=1,
            )
        ]
    )
    if audit is not None:
        endpoint.audit.CopyFrom(audit)
    return endpoint


@pytest.mark.parametrize("rate", [math.nan, -0.5, 1.5, math.inf])
async def test_a_bad_sample_rate_is_invalid_argument(registry_stub: Stub, rate: float) -> None:
    await upload(registry_stub, "fraud", add_constant(1.0))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await registry_stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                endpoint_id="fraud", endpoint=_endpoint(pb.AuditPolicy(sample_rate=rate))
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "audit sample_rate" in (info.value.details() or "")


async def test_the_policy_is_stored_updated_alone_and_watched(registry_stub: Stub) -> None:
    await upload(registry_stub, "fraud", add_constant(1.0))
    created = await registry_stub.CreateEndpoint(
        pb.CreateEndpointRequest(
            endpoint_id="fraud",
            endpoint=_endpoint(pb.AuditPolicy(sample_rate=0.25, redact_inputs=["ssn", "ssn"])),
        )
    )
    assert created.audit.sample_rate == 0.25
    assert list(created.audit.redact_inputs) == ["ssn"]  # duplicates dropped
    got = await registry_stub.GetEndpoint(pb.GetEndpointRequest(name="endpoints/fraud"))
    assert got.audit == created.audit

    # Only the audit policy changes; the routing policy stays as it was.
    update = pb.Endpoint(
        name="endpoints/fraud", audit=pb.AuditPolicy(sample_rate=1.0, redact_inputs=["x"])
    )
    updated = await registry_stub.UpdateEndpoint(
        pb.UpdateEndpointRequest(endpoint=update, update_mask=FieldMask(paths=["audit"]))
    )
    assert updated.audit.sample_rate == 1.0 and list(updated.audit.redact_inputs) == ["x"]
    assert updated.salt == created.salt and updated.variants == created.variants

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await registry_stub.UpdateEndpoint(
            pb.UpdateEndpointRequest(
                endpoint=pb.Endpoint(
                    name="endpoints/fraud", audit=pb.AuditPolicy(sample_rate=1, redact_inputs=[""])
                ),
                update_mask=FieldMask(paths=["audit"]),
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # The Watch snapshot carries the policy (inference learns it from there).
    stream = registry_stub.Watch(pb.WatchRequest(start_revision=0, kinds=[pb.ENDPOINT]))
    async for event in stream:
        if event.type == pb.WatchEvent.SYNCED:
            raise AssertionError("no endpoint event in the snapshot")
        assert event.name == "endpoints/fraud"
        assert event.endpoint.audit.sample_rate == 1.0
        assert list(event.endpoint.audit.redact_inputs) == ["x"]
        break
    stream.cancel()

    # Cleared with an update that leaves it unset.
    cleared = await registry_stub.UpdateEndpoint(
        pb.UpdateEndpointRequest(
            endpoint=pb.Endpoint(name="endpoints/fraud"), update_mask=FieldMask(paths=["audit"])
        )
    )
    assert not cleared.HasField("audit")
