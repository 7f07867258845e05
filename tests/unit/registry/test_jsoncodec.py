"""Stored JSON ↔ the contract's immutable values (schemas, selectors, sticky keys)."""

from __future__ import annotations

from modelhub.common import contract
from modelhub.common.contract import KeySource, ModelSchema, StickyKey, TensorSpec, VersionSelector
from modelhub.registry import resources
from modelhub.registry.jsoncodec import from_json, to_json
from modelhub.registry.store.deployments import StoredDeployment
from modelhub.registry.store.endpoints import StoredEndpoint


def test_the_registry_uses_the_contracts_types() -> None:
    for name in ("EventType", "KeySource", "ModelSchema", "StickyKey", "TensorSpec"):
        assert getattr(resources, name) is getattr(contract, name)
    assert resources.VersionSelector is contract.VersionSelector


def test_a_schema_round_trips_as_tuples() -> None:
    schema = ModelSchema(
        inputs=(TensorSpec("x", "FP32", (-1, 4), ("batch", "")),),
        outputs=(TensorSpec("y", "INT64", (-1,), ("batch",)), TensorSpec("z", "BOOL", ())),
        opsets=(("", 17), ("ai.onnx.ml", 3)),
        producer_name="p",
        producer_version="1",
        ir_version=8,
        graph_name="g",
    )
    back = from_json(ModelSchema, to_json(schema))
    assert back == schema
    # Fields that take no part in comparisons come back too, as tuples.
    assert back.opsets == (("", 17), ("ai.onnx.ml", 3))
    assert back.inputs[0].dim_names == ("batch", "")
    assert isinstance(back.inputs[0].shape, tuple)
    assert (back.producer_name, back.producer_version, back.ir_version, back.graph_name) == (
        "p",
        "1",
        8,
        "g",
    )


def test_a_schema_stored_before_reads_back() -> None:
    """The JSON schemas were stored in (lists) is the JSON they are stored in now."""
    stored = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4], "dim_names": ["b", ""]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1], "dim_names": []}],
        "opsets": [["", 17]],
        "producer_name": "",
        "producer_version": "",
        "ir_version": 8,
        "graph_name": "",
    }
    schema = from_json(ModelSchema, stored)
    assert schema.inputs == (TensorSpec("x", "FP32", (-1, 4)),)
    assert schema.inputs[0].dim_names == ("b", "")
    assert schema.opsets == (("", 17),)
    assert to_json(schema) == stored


def test_stored_policies_read_back_with_the_contracts_values() -> None:
    deployment = {
        "model": "fraud",
        "versions": [
            {"version": 3, "alias": None, "resolved_version": 0},
            {"version": None, "alias": "champion", "resolved_version": 0},
        ],
        "instance_count": 1,
        "device": "auto",
        "batching": {},
        "runtime": {},
    }
    dep = from_json(StoredDeployment, deployment)
    assert dep.versions == [VersionSelector(version=3), VersionSelector(alias="champion")]
    endpoint = {
        "description": "",
        "sticky_key": {"source": "metadata", "name": "x-user-id"},
        "salt": "s",
        "variants": [],
        "shadows": [],
        "fallback": "",
    }
    ep = from_json(StoredEndpoint, endpoint)
    assert ep.sticky_key == StickyKey(KeySource.METADATA, "x-user-id")
    assert to_json(ep)["sticky_key"] == endpoint["sticky_key"]
