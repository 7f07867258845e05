"""Deployments and endpoints: validation, resolution, etags, and in-use protection."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _two_versions(stub: Stub) -> None:
    await upload(stub, "fraud", add_constant(1.0))
    await upload(stub, "fraud", add_constant(2.0))
    await stub.SetAlias(pb.SetAliasRequest(parent="models/fraud", alias="champion", version=1))


def _endpoint(**overrides) -> pb.Endpoint:
    fields = {
        "sticky_key": pb.StickyKey(source=pb.StickyKey.METADATA, name="x-user-id"),
        "variants": [
            pb.Variant(
                name="champion",
                model="models/fraud",
                selector=pb.VersionSelector(alias="champion"),
                weight=90,
            ),
            pb.Variant(
                name="challenger",
                model="models/fraud",
                selector=pb.VersionSelector(version=2),
                weight=10,
            ),
        ],
        "shadows": [pb.Shadow(name="next", model="models/fraud", sample_rate=1.0)],
        "fallback": "champion",
    }
    fields.update(overrides)
    return pb.Endpoint(**fields)


async def test_endpoint_lifecycle(registry_stub: Stub) -> None:
    await _two_versions(registry_stub)
    created = await registry_stub.CreateEndpoint(
        pb.CreateEndpointRequest(endpoint_id="fraud", endpoint=_endpoint())
    )
    assert created.name == "endpoints/fraud"
    assert created.salt  # generated
    assert [v.selector.resolved_version for v in created.variants] == [1, 2]
    assert created.shadows[0].selector.resolved_version == 2  # latest
    # Moving the alias changes what the endpoint resolves to.
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="champion", version=2)
    )
    got = await registry_stub.GetEndpoint(pb.GetEndpointRequest(name="endpoints/fraud"))
    assert got.variants[0].selector.resolved_version == 2
    assert got.salt == created.salt

    # Weight change with the current etag, then a stale etag.
    variants = list(got.variants)
    variants[0].weight, variants[1].weight = 80, 20
    updated = await registry_stub.UpdateEndpoint(
        pb.UpdateEndpointRequest(
            endpoint=pb.Endpoint(name="endpoints/fraud", variants=variants, etag=got.etag),
            update_mask=FieldMask(paths=["variants"]),
        )
    )
    assert [v.weight for v in updated.variants] == [80, 20]
    assert updated.fallback == "champion"
    stale = await _error(
        registry_stub.UpdateEndpoint(
            pb.UpdateEndpointRequest(
                endpoint=pb.Endpoint(name="endpoints/fraud", variants=variants, etag=got.etag),
                update_mask=FieldMask(paths=["variants"]),
            )
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED

    # In use: version 2, the alias, the model.
    for call in [
        registry_stub.DeleteModelVersion(
            pb.DeleteModelVersionRequest(name="models/fraud/versions/2")
        ),
        registry_stub.ArchiveModelVersion(
            pb.ArchiveModelVersionRequest(name="models/fraud/versions/2")
        ),
        registry_stub.DeleteAlias(pb.DeleteAliasRequest(name="models/fraud/aliases/champion")),
        registry_stub.DeleteModel(pb.DeleteModelRequest(name="models/fraud")),
    ]:
        err = await _error(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "endpoints/fraud" in (err.details() or "")
    # Version 1 is not used by anyone now: it can go.
    await registry_stub.DeleteModelVersion(
        pb.DeleteModelVersionRequest(name="models/fraud/versions/1")
    )

    listed = await registry_stub.ListEndpoints(pb.ListEndpointsRequest())
    assert [e.name for e in listed.endpoints] == ["endpoints/fraud"]
    await registry_stub.DeleteEndpoint(pb.DeleteEndpointRequest(name="endpoints/fraud"))
    await registry_stub.DeleteModel(pb.DeleteModelRequest(name="models/fraud"))


@pytest.mark.parametrize(
    ("endpoint_id", "endpoint", "fragment"),
    [
        ("Fraud", _endpoint(), "not valid"),
        ("fraud", _endpoint(variants=[]), "at least one variant"),
        (
            "fraud",
            _endpoint(
                variants=[
                    pb.Variant(name="a", model="models/fraud", weight=0),
                    pb.Variant(name="b", model="models/fraud", weight=0),
                ],
                fallback="",
            ),
            "sum to 0",
        ),
        (
            "fraud",
            _endpoint(
                variants=[pb.Variant(name="a", model="models/fraud", weight=-1)], fallback=""
            ),
            ">= 0",
        ),
        (
            "fraud",
            _endpoint(
                variants=[
                    pb.Variant(name="a", model="models/fraud", weight=1e308),
                    pb.Variant(name="b", model="models/fraud", weight=1e308),
                ],
                fallback="",
            ),
            "not a finite number",
        ),
        (
            "fraud",
            _endpoint(
                variants=[
                    pb.Variant(
                        name="a",
                        model="models/fraud",
                        selector=pb.VersionSelector(version=9),
                        weight=1,
                    )
                ],
                fallback="",
            ),
            "no version 9",
        ),
        (
            "fraud",
            _endpoint(
                variants=[
                    pb.Variant(
                        name="a",
                        model="models/fraud",
                        selector=pb.VersionSelector(alias="nobody"),
                        weight=1,
                    )
                ],
                fallback="",
            ),
            "no alias 'nobody'",
        ),
        (
            "fraud",
            _endpoint(variants=[pb.Variant(name="a", model="models/ghost", weight=1)], fallback=""),
            "does not exist",
        ),
        ("fraud", _endpoint(fallback="nobody"), "fallback"),
        (
            "fraud",
            _endpoint(shadows=[pb.Shadow(name="s", model="models/fraud", sample_rate=1.5)]),
            "sample_rate",
        ),
        (
            "fraud",
            _endpoint(shadows=[pb.Shadow(name="champion", model="models/fraud", sample_rate=1)]),
            "twice",
        ),
        (
            "fraud",
            _endpoint(sticky_key=pb.StickyKey(source=pb.StickyKey.METADATA, name="X User")),
            "header",
        ),
        (
            "fraud",
            _endpoint(
                variants=[pb.Variant(name="a", model="models/fraud", weight=1, pool=["nohost"])],
                fallback="",
            ),
            "host:port",
        ),
        # Messages echoing a long value are cut to fit in the client's 8 KiB of trailers:
        # before, the client got RESOURCE_EXHAUSTED "Stream removed" (found by tests/fuzz).
        ("fraud", _endpoint(fallback="é" * 3000), "fallback 'ééé"),
        (
            "fraud",
            _endpoint(
                variants=[pb.Variant(name="a", model="models/fraud", weight=1, pool=["h" * 20000])]
            ),
            "backend address 'hhh",
        ),
    ],
)
async def test_bad_endpoints(
    registry_stub: Stub, endpoint_id: str, endpoint: pb.Endpoint, fragment: str
) -> None:
    await _two_versions(registry_stub)
    err = await _error(
        registry_stub.CreateEndpoint(
            pb.CreateEndpointRequest(endpoint_id=endpoint_id, endpoint=endpoint)
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert fragment in (err.details() or "")
    listed = await registry_stub.ListEndpoints(pb.ListEndpointsRequest())
    assert list(listed.endpoints) == []


async def test_deployment_lifecycle(registry_stub: Stub) -> None:
    await _two_versions(registry_stub)
    created = await registry_stub.CreateDeployment(
        pb.CreateDeploymentRequest(
            deployment_id="fraud-prod",
            deployment=pb.Deployment(
                model="models/fraud",
                versions=[pb.VersionSelector(alias="champion"), pb.VersionSelector(version=2)],
                batching=types_pb2.BatchingConfig(max_batch_size=32, max_queue_delay_us=2000),
                runtime=types_pb2.RuntimeConfig(intra_op_threads=1),
                device=types_pb2.CPU,
            ),
        )
    )
    assert created.instance_count == 1
    assert [v.resolved_version for v in created.versions] == [1, 2]
    assert created.batching.max_batch_size == 32
    assert created.device == types_pb2.CPU

    dup = await _error(
        registry_stub.CreateDeployment(
            pb.CreateDeploymentRequest(deployment_id="fraud-prod", deployment=created)
        )
    )
    assert dup.code() == grpc.StatusCode.ALREADY_EXISTS

    updated = await registry_stub.UpdateDeployment(
        pb.UpdateDeploymentRequest(
            deployment=pb.Deployment(
                name="deployments/fraud-prod", instance_count=2, etag=created.etag
            ),
            update_mask=FieldMask(paths=["instance_count"]),
        )
    )
    assert updated.instance_count == 2
    assert updated.batching.max_batch_size == 32

    for deployment, fragment in [
        (pb.Deployment(model="models/fraud"), "at least one version"),
        (
            pb.Deployment(model="models/fraud", versions=[pb.VersionSelector(version=7)]),
            "no version 7",
        ),
        (
            pb.Deployment(
                model="models/fraud",
                versions=[pb.VersionSelector()],
                batching=types_pb2.BatchingConfig(max_batch_size=-1),
            ),
            "max_batch_size",
        ),
        (
            pb.Deployment(
                model="models/fraud",
                versions=[pb.VersionSelector()],
                runtime=types_pb2.RuntimeConfig(graph_optimization="turbo"),
            ),
            "graph_optimization",
        ),
        (pb.Deployment(model="fraud", versions=[pb.VersionSelector()]), "model name"),
    ]:
        err = await _error(
            registry_stub.CreateDeployment(
                pb.CreateDeploymentRequest(deployment_id="bad", deployment=deployment)
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (err.details() or ""), err.details()

    in_use = await _error(
        registry_stub.DeleteModelVersion(
            pb.DeleteModelVersionRequest(name="models/fraud/versions/1")
        )
    )
    assert in_use.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "deployments/fraud-prod" in (in_use.details() or "")
    await registry_stub.DeleteDeployment(pb.DeleteDeploymentRequest(name="deployments/fraud-prod"))
    await registry_stub.DeleteModelVersion(
        pb.DeleteModelVersionRequest(name="models/fraud/versions/1")
    )
    missing = await _error(
        registry_stub.GetDeployment(pb.GetDeploymentRequest(name="deployments/fraud-prod"))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
