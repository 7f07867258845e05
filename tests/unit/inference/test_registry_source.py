"""Registry protobufs → the inference domain, through the contract's one view
(`modelhub.common.registry_view`)."""

from __future__ import annotations

import pytest

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import model_of
from modelhub.common.registry_view import event_from_pb as source_event
from modelhub.inference.registry_source import version_info
from modelhub.inference.source import EventType, ResourceKind, VersionSelector
from modelhub.inference.spec import Device, LoadOverrides


def test_model_of_resource_names() -> None:
    # The registry's rules, whole: an alias reference is a version name, not a model id.
    assert model_of("models/fraud") == "fraud"
    assert model_of("models/fraud/versions/3") == "fraud"
    assert model_of("models/fraud@champion") == "fraud"
    assert model_of("models/fraud/aliases/champion") == "fraud"
    for bad in ("deployments/x", "models/Fraud", "models/fraud@", "models/fraud/versions/0"):
        with pytest.raises(InvalidArgumentError):
            model_of(bad)


def test_version_info() -> None:
    version = rpb.ModelVersion(
        name="models/fraud/versions/3",
        model="models/fraud",
        version=3,
        artifact=rpb.Artifact(sha256="ab" * 32, size_bytes=1234),
        schema=rpb.ModelSchema(
            inputs=[types_pb2.TensorSpec(name="x", datatype="FP32", shape=[-1, 8])],
            outputs=[types_pb2.TensorSpec(name="y", datatype="FP32", shape=[-1, 4])],
        ),
        aliases=["champion"],
    )
    info = version_info(version)
    assert (info.model, info.version, info.size_bytes) == ("fraud", 3, 1234)
    assert info.schema is not None
    assert info.schema.inputs[0].shape == (-1, 8)
    assert info.aliases == ("champion",)


def test_deployment_event() -> None:
    deployment = rpb.Deployment(
        name="deployments/fraud",
        model="models/fraud",
        versions=[
            rpb.VersionSelector(alias="champion"),
            rpb.VersionSelector(version=2),
            rpb.VersionSelector(),
        ],
        instance_count=2,
        device=types_pb2.CPU,
        batching=types_pb2.BatchingConfig(max_batch_size=16, max_queue_delay_us=500),
        runtime=types_pb2.RuntimeConfig(intra_op_threads=2),
    )
    event = source_event(
        rpb.WatchEvent(
            type=rpb.WatchEvent.PUT,
            revision=12,
            kind=rpb.DEPLOYMENT,
            name="deployments/fraud",
            deployment=deployment,
        )
    )
    assert (event.type, event.kind, event.revision, event.model) == (
        EventType.PUT,
        ResourceKind.DEPLOYMENT,
        12,
        "fraud",
    )
    spec = event.deployment
    assert spec is not None and spec.name == "deployments/fraud"
    assert spec.selectors == (
        VersionSelector(alias="champion"),
        VersionSelector(version=2),
        VersionSelector(),
    )
    overrides = LoadOverrides.of_deployment(spec)
    assert overrides.batching.max_batch_size == 16
    assert overrides.batching.max_queue_delay_s == 0.0005
    assert overrides.batching.max_queue_size is None  # 0: the server default
    assert overrides.runtime.instance_count == 2
    assert overrides.runtime.device is Device.CPU
    assert overrides.runtime.intra_op_threads == 2


def test_other_events() -> None:
    synced = source_event(rpb.WatchEvent(type=rpb.WatchEvent.SYNCED, revision=40))
    assert (synced.type, synced.revision) == (EventType.SYNCED, 40)
    alias = source_event(
        rpb.WatchEvent(
            type=rpb.WatchEvent.DELETE,
            revision=41,
            kind=rpb.ALIAS,
            name="models/fraud/aliases/champion",
        )
    )
    assert (alias.type, alias.kind, alias.model) == (EventType.DELETE, ResourceKind.ALIAS, "fraud")
