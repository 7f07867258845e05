"""`modelhub versions optimize`: build an optimized derivative of a READY version, measure
it against its parent, and register it with its lineage and report (optionally aliased and
shadowing the parent on an endpoint).

Everything that can fail on the user's input fails before anything is registered: the
parent not READY, calibration/validation data that does not fit the inputs, a model the
quantizer cannot handle, an endpoint that does not exist.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.client import RegistryClient
from modelhub.common.errors import FailedPreconditionError
from modelhub.optimize import EvaluationReport, derive, evaluate, model_inputs, synthesise
from modelhub.optimize.derive import STATIC_INT8
from modelhub.optimize.inputs import load_arrays


@dataclass
class Optimized:
    version: pb.ModelVersion
    report: EvaluationReport
    notes: list[str]


def _profile_dict(version: pb.ModelVersion) -> dict[str, Any] | None:
    if not version.HasField("data_profile"):
        return None
    return json_format.MessageToDict(version.data_profile, preserving_proto_field_name=True)


def report_to_pb(report: EvaluationReport) -> pb.EvaluationReport:
    fields = report.as_dict()
    fields.pop("method")
    if fields["argmax_agreement"] is None:
        fields.pop("argmax_agreement")
    return pb.EvaluationReport(**fields)


def report_from_pb(version: pb.ModelVersion) -> EvaluationReport:
    fields = json_format.MessageToDict(version.evaluation, preserving_proto_field_name=True)
    fields["rows"] = int(fields.get("rows", 0))
    fields.setdefault("argmax_agreement", None)
    return EvaluationReport.from_dict({**fields, "method": version.derivation.method})


async def _add_shadow(
    client: RegistryClient, endpoint: pb.Endpoint, version: pb.ModelVersion, rate: float
) -> str:
    """The derivative as a shadow on `endpoint` (it gets a copy of `rate` of the traffic),
    and as a selected version of the model's deployments so replicas load it."""
    spec = pb.Endpoint()
    spec.CopyFrom(endpoint)
    name = f"{version.derivation.method.replace('-', '')}-v{version.version}"
    spec.shadows.append(
        pb.Shadow(
            name=name,
            model=version.model,
            selector=pb.VersionSelector(version=version.version),
            sample_rate=rate,
        )
    )
    await client.apply_endpoint(endpoint.name.removeprefix("endpoints/"), spec)
    deployed = []
    for deployment in await client.list_deployments():
        if deployment.model != version.model:
            continue
        update = pb.Deployment()
        update.CopyFrom(deployment)
        update.versions.append(pb.VersionSelector(version=version.version))
        await client.apply_deployment(deployment.name.removeprefix("deployments/"), update)
        deployed.append(deployment.name)
    where = ", ".join(deployed) or "no deployment of the model (replicas load it on demand)"
    return f"shadow {name!r} on {endpoint.name} at {rate:g}; deployed by {where}"


async def optimize(
    client: RegistryClient,
    reference: str,
    method: str,
    *,
    calibration: str = "",
    validation: str = "",
    alias: str = "",
    shadow_on: str = "",
    shadow_rate: float = 1.0,
    rows: int = 1024,
    threads: int = 1,
    say: Callable[[str], None] = lambda _: None,
    progress: Callable[[str], Callable[[int, int], None]] | None = None,
) -> Optimized:
    """Build, measure and register the derivative; `say` tells what it is doing, `progress`
    makes a progress callback for a transfer (the parent's download) from its label."""
    parent = await client.resolve(reference)
    if parent.status != pb.ModelVersion.READY:
        raise FailedPreconditionError(
            f"{parent.name} is not READY: derivatives are built only from READY versions",
            reason="PARENT_NOT_READY",
        )
    endpoint = await client.get_endpoint(shadow_on) if shadow_on else None
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelhub-optimize-") as tmp:
        parent_path = Path(tmp) / "parent.onnx"
        say(f"downloading {parent.name}")
        label = f"downloading {parent.name}"
        await client.download(parent.name, parent_path, progress(label) if progress else None)
        parent_bytes = parent_path.read_bytes()
        # Domain errors of the local work (bad data, a model the tool cannot handle) reach
        # the CLI, which prints them with their status code like a refused call.
        specs = model_inputs(parent_bytes)
        profile = _profile_dict(parent)
        features = [str(f.get("name", "")) for f in (profile or {}).get("features", [])]
        calibration_data = None
        if calibration:
            calibration_data = load_arrays(calibration, parent_bytes, "calibration", features)
        elif method == STATIC_INT8:
            calibration_data, how = synthesise(specs, profile, rows, seed=1)
            notes.append(f"calibration {how}")
        if validation:
            validation_data = load_arrays(validation, parent_bytes, "validation", features)
            given = len(next(iter(validation_data.values())))
            how = f"given: {Path(validation).name} ({given} rows)"
        else:
            validation_data, how = synthesise(specs, profile, rows, seed=2)
        say(f"building the {method} derivative")
        derivative = await asyncio.to_thread(derive, parent_bytes, method, calibration_data)
        say("measuring it against the parent")
        report = await asyncio.to_thread(
            evaluate, parent_bytes, derivative, method, validation_data, how, threads=threads
        )
        path = Path(tmp) / f"{method}.onnx"
        path.write_bytes(derivative)
        version = await client.push(
            parent.model,
            path,
            create_model=False,
            description=f"{method} derivative of {parent.name}",
            author=parent.author,
            source=parent.source,
            metadata=dict(parent.metadata),
            tags=list(parent.tags),
            aliases=[alias] if alias else [],
            data_profile=parent.data_profile if parent.HasField("data_profile") else None,
            derivation=pb.Derivation(parent=parent.name, method=method),
            evaluation=report_to_pb(report),
        )
    if endpoint is not None:
        notes.append(await _add_shadow(client, endpoint, version, shadow_rate))
    return Optimized(version, report, notes)
