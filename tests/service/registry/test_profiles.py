"""Data profiles: the registry enforces the suite's one profile validator at upload and
update, so a profile it stores is one the monitor accepts as a baseline (the monitor used
to refuse, with FAILED_PRECONDITION on the drift report, what the registry had stored)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.errors import FieldViolation
from modelhub.common.status import bad_request
from modelhub.monitor.convert import profile_from_proto
from modelhub.monitor.profile import validate_profile
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub
NUMERIC = types_pb2.FeatureProfile.NUMERIC


def _numeric(name: str, bins: int = 2, counts: list[float] | None = None) -> types_pb2.DataProfile:
    return types_pb2.DataProfile(
        features=[
            types_pb2.FeatureProfile(
                name=name,
                kind=NUMERIC,
                bin_edges=[float(i) for i in range(bins + 1)],
                counts=counts if counts is not None else [1.0] * bins,
                count=bins,
            )
        ]
    )


# What the monitor refused and the registry stored before: a space in a feature name,
# all-zero counts, more bins than a baseline may have.
REFUSED = [
    pytest.param(_numeric("amount eur"), "features[0].name", id="space-in-name"),
    pytest.param(_numeric("amount", counts=[0.0, 0.0]), "features[0].counts", id="all-zero"),
    pytest.param(_numeric("amount", bins=1500), "features[0].bin_edges", id="1500-bins"),
]


def _violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    details = bad_request(error)
    assert details is not None, error.details()
    return [FieldViolation(v.field, v.description) for v in details.field_violations]


@pytest.mark.parametrize(("profile", "field"), REFUSED)
async def test_a_profile_the_monitor_refuses_is_refused_at_upload(
    registry_stub: Stub, profile: types_pb2.DataProfile, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upload(registry_stub, "prof", add_constant(), data_profile=profile)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in _violations(err.value)]
    assert f"metadata.data_profile.{field}" in fields
    # Nothing was created.
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await registry_stub.GetModel(pb.GetModelRequest(name="models/prof"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # … and the monitor says the same of it.
    with pytest.raises(Exception, match="invalid data profile"):
        validate_profile(profile_from_proto(profile), "data_profile")


@pytest.mark.parametrize(("profile", "field"), REFUSED)
async def test_a_profile_the_monitor_refuses_is_refused_on_update(
    registry_stub: Stub, profile: types_pb2.DataProfile, field: str
) -> None:
    created = await upload(registry_stub, "prof", add_constant(), data_profile=_numeric("x"))
    full = await registry_stub.GetModelVersion(
        pb.GetModelVersionRequest(name=created.name, view=pb.FULL)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await registry_stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=pb.ModelVersion(name=created.name, etag=full.etag, data_profile=profile),
                update_mask=FieldMask(paths=["data_profile"]),
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"version.data_profile.{field}" in [v.field for v in _violations(err.value)]
    unchanged = await registry_stub.GetModelVersion(
        pb.GetModelVersionRequest(name=created.name, view=pb.FULL)
    )
    assert unchanged.data_profile == _numeric("x")


async def test_a_stored_profile_is_a_baseline_the_monitor_accepts(registry_stub: Stub) -> None:
    profile = types_pb2.DataProfile(
        features=[
            types_pb2.FeatureProfile(
                name="amount_eur",
                kind=NUMERIC,
                bin_edges=[0.0, 10.0, 100.0],
                counts=[5.0, 0.0],
                quantiles=[1.0, 50.0],
                count=5,
            ),
            types_pb2.FeatureProfile(
                name="country[0]",
                kind=types_pb2.FeatureProfile.CATEGORICAL,
                categories=["de", "fr"],
                counts=[3.0, 1.0],
            ),
        ],
        predictions=[_numeric("score", bins=1000).features[0]],
    )
    created = await upload(registry_stub, "prof", add_constant(), data_profile=profile)
    stored = await registry_stub.GetModelVersion(
        pb.GetModelVersionRequest(name=created.name, view=pb.FULL)
    )
    assert stored.data_profile == profile
    validate_profile(profile_from_proto(stored.data_profile), "data_profile")
