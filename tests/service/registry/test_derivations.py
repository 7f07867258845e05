"""Optimized derivatives: a version registered with its parent and method (lineage) and its
evaluation report, stored and returned; refused for a parent that is not READY, an unknown
method, a report without a derivation or with impossible figures."""

from __future__ import annotations

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub


def _report(**overrides: object) -> pb.EvaluationReport:
    fields: dict[str, object] = {
        "validation": "synthesised: 256 rows drawn from the parent's data profile",
        "rows": 256,
        "max_abs_diff": 0.12,
        "mean_abs_diff": 0.02,
        "argmax_agreement": 0.99,
        "size_ratio": 0.25,
        "latency_ratio_batch1": 0.4,
        "throughput_ratio_batch1": 2.5,
        "best_batch_size": 32,
        "latency_ratio_best": 0.3,
        "throughput_ratio_best": 3.3,
        "measured_on": "test: 2 CPUs",
    }
    fields.update(overrides)
    return pb.EvaluationReport(**fields)  # type: ignore[arg-type]


async def test_a_derivative_keeps_its_lineage_and_report(registry_stub: Stub) -> None:
    parent = await upload(registry_stub, "fraud", add_constant(1.0))
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="champion", version=1)
    )
    derivative = await upload(
        registry_stub,
        "fraud",
        add_constant(1.5),
        derivation=pb.Derivation(parent="models/fraud@champion", method="dynamic-int8"),
        evaluation=_report(),
    )
    assert derivative.version == 2
    assert derivative.derivation.parent == parent.name  # canonical, not the alias
    assert derivative.derivation.method == "dynamic-int8"
    assert derivative.derivation.parent_sha256 == parent.artifact.sha256
    again = await registry_stub.GetModelVersion(pb.GetModelVersionRequest(name=derivative.name))
    assert again.evaluation == _report()
    assert again.evaluation.HasField("argmax_agreement")
    listed = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/fraud")
    )
    assert [v.derivation.method for v in listed.versions] == ["dynamic-int8", ""]
    # A regression model's report has no argmax agreement, and says so by its absence.
    regression = await upload(
        registry_stub,
        "fraud",
        add_constant(1.7),
        derivation=pb.Derivation(parent=parent.name, method="fp16"),
        evaluation=_report(argmax_agreement=None),
    )
    assert not regression.evaluation.HasField("argmax_agreement")


@pytest.mark.parametrize(
    ("derivation", "evaluation", "code", "text"),
    [
        (
            pb.Derivation(parent="models/fraud/versions/1", method="int3"),
            None,
            "INVALID_ARGUMENT",
            "unknown derivation method",
        ),
        (
            pb.Derivation(parent="fraud", method="fp16"),
            None,
            "INVALID_ARGUMENT",
            "metadata.derivation.parent",
        ),
        (pb.Derivation(parent="models/fraud/versions/9", method="fp16"), None, "NOT_FOUND", "9"),
        (None, _report(), "INVALID_ARGUMENT", "set metadata.derivation too"),
        (
            pb.Derivation(parent="models/fraud/versions/1", method="fp16"),
            _report(max_abs_diff=float("nan")),
            "INVALID_ARGUMENT",
            "max_abs_diff",
        ),
        (
            pb.Derivation(parent="models/fraud/versions/1", method="fp16"),
            _report(rows=0),
            "INVALID_ARGUMENT",
            "no validation rows",
        ),
        (
            pb.Derivation(parent="models/fraud/versions/1", method="fp16"),
            _report(argmax_agreement=1.5),
            "INVALID_ARGUMENT",
            "argmax_agreement",
        ),
    ],
)
async def test_bad_derivations_register_nothing(
    registry_stub: Stub,
    derivation: pb.Derivation | None,
    evaluation: pb.EvaluationReport | None,
    code: str,
    text: str,
) -> None:
    await upload(registry_stub, "fraud", add_constant(1.0))
    fields: dict[str, object] = {}
    if derivation is not None:
        fields["derivation"] = derivation
    if evaluation is not None:
        fields["evaluation"] = evaluation
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await upload(registry_stub, "fraud", add_constant(2.0), **fields)
    assert info.value.code().name == code
    assert text in (info.value.details() or "")
    listed = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/fraud")
    )
    assert [v.version for v in listed.versions] == [1]


async def test_an_archived_parent_is_refused(registry_stub: Stub) -> None:
    parent = await upload(registry_stub, "fraud", add_constant(1.0))
    await registry_stub.ArchiveModelVersion(pb.ArchiveModelVersionRequest(name=parent.name))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await upload(
            registry_stub,
            "fraud",
            add_constant(2.0),
            derivation=pb.Derivation(parent=parent.name, method="fp16"),
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "READY" in (info.value.details() or "")
