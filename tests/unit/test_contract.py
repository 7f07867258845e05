"""The registry contract as every service reads it: names with the registry's rules, and
the registry's protobuf messages as typed values (`modelhub.common.registry_view`)."""

from __future__ import annotations

import pytest

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common import names
from modelhub.common.contract import (
    DeploymentSpec,
    Device,
    EventType,
    KeySource,
    ResourceKind,
    StickyKey,
    VersionSelector,
)
from modelhub.common.errors import InvalidArgumentError, InvalidArtifactError
from modelhub.common.onnx_schema import read_schema
from modelhub.common.registry_client import _event
from modelhub.common.registry_view import (
    deployment_from_pb,
    endpoint_from_pb,
    event_from_pb,
    version_from_pb,
)
from modelhub.registry import names as registry_names
from tests.onnx_models import add_constant

PUT, DELETE = rpb.WatchEvent.PUT, rpb.WatchEvent.DELETE


def test_the_registry_names_module_is_the_common_one() -> None:
    for name in ("check_id", "model_id", "parse_version_name", "parse_reference", "VersionRef"):
        assert getattr(registry_names, name) is getattr(names, name)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("models/fraud", "fraud"),
        ("models/fraud/versions/3", "fraud"),
        ("models/fraud@champion", "fraud"),
        ("models/fraud/aliases/champion", "fraud"),
    ],
)
def test_every_model_scoped_name_names_its_model(name: str, model: str) -> None:
    assert names.model_of(name) == model


@pytest.mark.parametrize(
    "name",
    [
        "fraud",
        "models/",
        "models/Fraud",
        "models/fraud/",
        "models/fraud@",
        "models/fraud@Champion",
        "models/fraud/versions/0",
        "models/fraud/versions/x",
        "models/fraud/aliases/",
        "endpoints/fraud",
        "models/fraud\n",
    ],
)
def test_a_name_the_registry_refuses_is_refused_everywhere(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        names.model_of(name, "model")
    assert names.id_in(name, names.MODELS) is None


def test_ids_in_names() -> None:
    assert names.id_in("models/fraud", names.MODELS) == "fraud"
    assert names.id_in("endpoints/e-1", names.ENDPOINTS) == "e-1"
    assert names.id_in("endpoints/e-", names.ENDPOINTS) is None


def test_selectors_and_their_references() -> None:
    assert VersionSelector(version=3).reference == "3"
    assert VersionSelector(alias="champion").reference == "champion"
    assert VersionSelector().reference == "latest" and VersionSelector().is_latest
    assert VersionSelector(alias="latest").describe() == "latest"
    # What the registry resolved it to is information, not identity.
    assert VersionSelector(version=3, resolved_version=3) == VersionSelector(version=3)


def test_an_endpoint_with_every_part() -> None:
    spec = endpoint_from_pb(
        rpb.Endpoint(
            name="endpoints/fraud",
            salt="s",
            sticky_key=rpb.StickyKey(source=rpb.StickyKey.METADATA, name="X-User-Id"),
            variants=[
                rpb.Variant(
                    name="champion",
                    model="models/fraud",
                    selector=rpb.VersionSelector(alias="champion", resolved_version=3),
                    weight=90,
                    pool=["gpu-1:9000"],
                ),
                rpb.Variant(name="challenger", model="models/fraud", weight=10),
            ],
            shadows=[
                rpb.Shadow(
                    name="next",
                    model="models/fraud-next",
                    selector=rpb.VersionSelector(version=1),
                    sample_rate=0.5,
                )
            ],
            fallback="champion",
            audit=rpb.AuditPolicy(sample_rate=0.1, redact_inputs=["ssn"]),
        )
    )
    assert spec.id == "fraud" and spec.name == "endpoints/fraud"
    assert spec.sticky_key == StickyKey(KeySource.METADATA, "x-user-id")
    champion, challenger = spec.variants
    assert (champion.model, champion.weight, champion.pool) == ("fraud", 90, ("gpu-1:9000",))
    assert champion.selector.resolved_version == 3 and challenger.selector.is_latest
    assert spec.shadows[0].model == "fraud-next" and spec.shadows[0].sample_rate == 0.5
    assert spec.fallback == "champion"
    assert spec.audit is not None and spec.audit.redact_inputs == ("ssn",)


@pytest.mark.parametrize(
    "model", ["models/fraud@champion", "fraud", "models/fraud/versions/1", "models/Fraud"]
)
def test_a_variant_names_a_model_not_a_version(model: str) -> None:
    # The router used to read `models/fraud@champion` as model "fraud@champion" and
    # inference as "fraud"; both now refuse it, as the registry does.
    endpoint = rpb.Endpoint(name="endpoints/e", variants=[rpb.Variant(name="a", model=model)])
    with pytest.raises(InvalidArgumentError) as err:
        endpoint_from_pb(endpoint)
    assert err.value.violations[0].field == "endpoint.variants[0].model"


def test_a_deployment_with_its_settings() -> None:
    spec = deployment_from_pb(
        rpb.Deployment(
            name="deployments/fraud-serving",
            model="models/fraud",
            instance_count=2,
            device=types_pb2.GPU,
            batching=types_pb2.BatchingConfig(max_batch_size=16),
        )
    )
    assert spec.id == "fraud-serving" and spec.name == "deployments/fraud-serving"
    assert spec.selectors == (VersionSelector(),)  # none given: the newest READY
    assert (spec.instance_count, spec.device, spec.batching.max_batch_size) == (2, Device.GPU, 16)
    assert DeploymentSpec("d", "m").selectors == (VersionSelector(),)


def test_a_version_and_its_schema() -> None:
    info = version_from_pb(
        rpb.ModelVersion(
            name="models/fraud/versions/3",
            model="models/fraud",
            version=3,
            status=rpb.ModelVersion.ARCHIVED,
            artifact=rpb.Artifact(sha256="ab" * 32, size_bytes=10),
            schema=rpb.ModelSchema(
                inputs=[
                    types_pb2.TensorSpec(
                        name="x", datatype="FP32", shape=[-1, 4], dim_names=["batch", ""]
                    )
                ],
                outputs=[types_pb2.TensorSpec(name="y", datatype="FP32", shape=[-1, 4])],
                opsets=[rpb.OperatorSet(domain="", version=17)],
            ),
        )
    )
    assert (info.name, info.ready, info.key.model) == ("models/fraud/versions/3", False, "fraud")
    assert info.schema is not None and info.schema.inputs[0].dim_names == ("batch", "")
    assert info.schema.opsets == (("", 17),)


def test_watch_events_of_every_kind() -> None:
    version = event_from_pb(
        rpb.WatchEvent(
            type=PUT,
            revision=5,
            kind=rpb.MODEL_VERSION,
            name="models/m/versions/2",
            version=rpb.ModelVersion(version=2, status=rpb.ModelVersion.READY),
        )
    )
    assert (version.kind, version.model, version.number) == (ResourceKind.MODEL_VERSION, "m", 2)
    assert version.version is not None and version.version.ready
    alias = event_from_pb(
        rpb.WatchEvent(
            type=PUT,
            revision=6,
            kind=rpb.ALIAS,
            name="models/m/aliases/champion",
            alias=rpb.Alias(alias="champion", version=2),
        )
    )
    assert (alias.model, alias.alias, alias.number) == ("m", "champion", 2)
    gone = event_from_pb(
        rpb.WatchEvent(
            type=DELETE,
            revision=7,
            kind=rpb.DEPLOYMENT,
            name="deployments/d",
            deployment=rpb.Deployment(name="deployments/d", model="models/m"),
        )
    )
    assert (gone.type, gone.id, gone.model, gone.deployment) == (EventType.DELETE, "d", "m", None)
    # A delete is never lost to its last state: only its name must be well formed.
    odd = event_from_pb(
        rpb.WatchEvent(
            type=DELETE,
            revision=8,
            kind=rpb.DEPLOYMENT,
            name="deployments/d",
            deployment=rpb.Deployment(name="deployments/d", model="models/Odd"),
        )
    )
    assert (odd.type, odd.id, odd.model) == (EventType.DELETE, "d", "")
    synced = event_from_pb(rpb.WatchEvent(type=rpb.WatchEvent.SYNCED, revision=9))
    assert (synced.type, synced.revision) == (EventType.SYNCED, 9)
    # A kind this build does not know still counts (its revision) but names nothing.
    future = event_from_pb(rpb.WatchEvent(type=PUT, revision=10, kind=99, name="x/y"))  # type: ignore[arg-type]
    assert (future.kind, future.revision) == (ResourceKind.OTHER, 10)


def test_a_malformed_watch_event_is_skipped_not_half_parsed() -> None:
    bad = rpb.WatchEvent(type=PUT, revision=3, kind=rpb.MODEL, name="models/Not_Valid")
    with pytest.raises(InvalidArgumentError):
        event_from_pb(bad)
    assert _event(bad) is None


def test_the_onnx_schema_reader() -> None:
    schema = read_schema(add_constant(features=4))
    assert [(t.name, t.datatype) for t in schema.inputs] == [("x", "FP32")]
    assert schema.inputs[0].shape[1] == 4 and schema.opsets
    with pytest.raises(InvalidArtifactError, match="not an ONNX model"):
        read_schema(b"\x00not onnx")
