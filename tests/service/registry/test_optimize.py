"""`modelhub versions optimize` against a real registry: the demo classifier and a small
CNN become int8/fp16 derivatives registered with lineage and report, whose outputs stay
within the reported error; bad input registers nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.devstack import demo
from modelhub.optimize import model_inputs, synthesise
from modelhub.registry.convert import profile_from_dict
from modelhub.registry.main import RegistryApp
from tests.cli import run_cli
from tests.onnx_models import small_cnn
from tests.service.registry.helpers import download, upload

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def _cli(address: str, *args: str) -> tuple[int, str, str]:
    return await run_cli("--registry", address, *args)


def _outputs(model: bytes, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0], np.float64)


async def _versions(stub: registry_pb2_grpc.RegistryServiceStub, model: str) -> list[int]:
    listed = await stub.ListModelVersions(pb.ListModelVersionsRequest(parent=f"models/{model}"))
    return [v.version for v in listed.versions]


async def test_demo_classifier_dynamic_int8_from_its_profile(
    registry: RegistryApp, registry_stub: registry_pb2_grpc.RegistryServiceStub
) -> None:
    profile = demo.data_profile(demo.training_sample())
    parent = await upload(
        registry_stub,
        "fraud",
        demo.classifier(1),
        data_profile=profile_from_dict(profile),
        aliases=["champion"],
    )
    code, out, err = await _cli(
        registry.address, "versions", "optimize", "fraud@champion",
        "--method", "dynamic-int8", "--alias", "candidate", "--rows", "512",
    )  # fmt: skip
    assert code == 0, err
    assert "registered models/fraud/versions/2 (dynamic-int8 of models/fraud/versions/1)" in out
    assert "synthesised: 512 rows drawn from the parent's data profile" in out
    assert "argmax agreement" in out

    derivative = await registry_stub.ResolveModelVersion(
        pb.ResolveModelVersionRequest(reference="models/fraud@candidate")
    )
    assert derivative.derivation.parent == parent.name
    assert derivative.derivation.method == "dynamic-int8"
    assert derivative.derivation.parent_sha256 == parent.artifact.sha256
    report = derivative.evaluation
    assert report.rows == 512 and report.best_batch_size >= 1
    assert "(8 of 8 input features profiled" in report.validation
    assert report.HasField("argmax_agreement") and report.argmax_agreement > 0.9
    assert derivative.data_profile == parent.data_profile  # the drift baseline carries over

    # The derivative's outputs stay within the reported error on the same rows.
    _, data = await download(registry_stub, derivative.name)
    assert report.size_ratio == pytest.approx(len(data) / len(demo.classifier(1)))
    specs = model_inputs(demo.classifier(1))
    rows, _ = synthesise(specs, profile, 512, seed=2)
    diff = np.abs(_outputs(data, rows) - _outputs(demo.classifier(1), rows)).max()
    assert 0 < diff <= report.max_abs_diff * (1 + 1e-6)

    code, out, err = await _cli(registry.address, "versions", "report", "fraud:2")
    assert code == 0, err
    assert out.startswith("models/fraud/versions/2: dynamic-int8 of models/fraud/versions/1")
    code, out, err = await _cli(registry.address, "versions", "report", "fraud:1")
    assert code == 1 and "not an optimized derivative" in err


@pytest.mark.parametrize("method", ["static-int8", "fp16"])
async def test_small_cnn_with_given_calibration_and_validation(
    registry: RegistryApp,
    registry_stub: registry_pb2_grpc.RegistryServiceStub,
    tmp_path: Path,
    method: str,
) -> None:
    await upload(registry_stub, "vision", small_cnn())
    rng = np.random.default_rng(0)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, image=rng.standard_normal((64, 3, 16, 16)).astype(np.float32))
    validation = tmp_path / "validation.npy"
    rows = rng.standard_normal((96, 3, 16, 16)).astype(np.float32)
    np.save(validation, rows)
    code, out, err = await _cli(
        registry.address, "--json", "versions", "optimize", "vision:1", "--method", method,
        "--calibration", str(calibration), "--validation", str(validation),
    )  # fmt: skip
    assert code == 0, err
    version = json.loads(out)
    report = version["evaluation"]
    assert version["derivation"]["method"] == method
    assert report["validation"] == "given: validation.npy (96 rows)"
    assert int(report["rows"]) == 96
    _, data = await download(registry_stub, version["name"])
    diff = np.abs(_outputs(data, {"image": rows}) - _outputs(small_cnn(), {"image": rows})).max()
    assert diff <= report["max_abs_diff"] * (1 + 1e-6)
    assert report["max_abs_diff"] < (0.5 if method == "static-int8" else 0.01)


async def test_bad_input_registers_nothing(
    registry: RegistryApp, registry_stub: registry_pb2_grpc.RegistryServiceStub, tmp_path: Path
) -> None:
    parent = await upload(registry_stub, "vision", small_cnn())
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, image=np.zeros((8, 3, 8, 8), np.float32))
    misnamed = tmp_path / "misnamed.npz"
    np.savez(misnamed, pixels=np.zeros((8, 3, 16, 16), np.float32))
    cases = [
        (["--method", "static-int8", "--calibration", str(wrong)], "has shape [8, 3, 8, 8]"),
        (["--method", "static-int8", "--calibration", str(misnamed)], "missing ['image']"),
        # No --validation and no data profile to synthesise it from.
        (["--method", "fp16"], "no data profile"),
        (["--method", "fp16", "--validation", str(tmp_path / "absent.npz")], "cannot read"),
    ]
    for extra, text in cases:
        code, _, err = await _cli(registry.address, "versions", "optimize", "vision:1", *extra)
        assert code == 1, err
        assert "INVALID_ARGUMENT" in err and text in err, err
    await registry_stub.ArchiveModelVersion(pb.ArchiveModelVersionRequest(name=parent.name))
    code, _, err = await _cli(
        registry.address, "versions", "optimize", "vision:1", "--method", "fp16"
    )
    assert code == 1 and "FAILED_PRECONDITION" in err and "not READY" in err
    assert await _versions(registry_stub, "vision") == [1]


async def test_parquet_validation_mapped_like_batch_scoring(
    registry: RegistryApp, registry_stub: registry_pb2_grpc.RegistryServiceStub, tmp_path: Path
) -> None:
    """Parquet columns feed the inputs as `modelhub score` maps them: here the data
    profile's feature names; a null is refused with its row, before anything registers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    profile = demo.data_profile(demo.training_sample())
    await upload(
        registry_stub, "fraud", demo.classifier(1), data_profile=profile_from_dict(profile)
    )
    rows = demo.training_sample(rows=300, seed=11)
    columns = {f"input[{i}]": rows[:, i] for i in range(demo.FEATURES)}
    good = tmp_path / "validation.parquet"
    pq.write_table(pa.table(columns), good)
    code, out, err = await _cli(
        registry.address, "--json", "versions", "optimize", "fraud:1",
        "--method", "fp16", "--validation", str(good),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["evaluation"]["validation"] == "given: validation.parquet (300 rows)"
    holes = dict(columns)
    holes["input[2]"] = pa.array([None if i == 3 else float(v) for i, v in enumerate(rows[:, 2])])
    bad = tmp_path / "holes.parquet"
    pq.write_table(pa.table(holes), bad)
    code, _, err = await _cli(
        registry.address, "versions", "optimize", "fraud:1",
        "--method", "fp16", "--validation", str(bad),
    )  # fmt: skip
    assert code == 1 and "INVALID_ARGUMENT" in err and "row 3" in err, err
    assert await _versions(registry_stub, "fraud") == [2, 1]
