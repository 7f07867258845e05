"""`modelhub score` against a real registry: the reference resolved, the artifact
downloaded and verified, the file scored (here and on a local Dask cluster), and the
version named in the output's metadata."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelhub.api.common.v1 import types_pb2
from modelhub.client import RegistryClient
from tests.unit.scoring.helpers import (
    FEATURES,
    features,
    list_column,
    read_outputs,
    reference,
    small_mlp,
)

NAMES = tuple(f"f{i:02d}" for i in range(FEATURES))


async def _cli(address: str, *args: str) -> tuple[int, str, str]:
    # A scheduler that is not there is given up after 3 s (Dask's default: 30 s).
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelhub.cli", "--registry", address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _profile() -> types_pb2.DataProfile:
    """A data profile naming the model's 16 features (the drift baseline)."""
    return types_pb2.DataProfile(
        features=[
            types_pb2.FeatureProfile(
                name=name,
                kind=types_pb2.FeatureProfile.NUMERIC,
                bin_edges=[-1.0, 0.0, 1.0],
                counts=[5, 5],
                count=10,
            )
            for name in NAMES
        ]
    )


async def _publish(address: str, tmp_path: Path) -> str:
    (tmp_path / "v1.onnx").write_bytes(small_mlp(seed=1))
    (tmp_path / "v2.onnx").write_bytes(small_mlp(seed=2))
    async with RegistryClient(address) as client:
        await client.push("fraud", tmp_path / "v1.onnx")
        await client.push("fraud", tmp_path / "v2.onnx", data_profile=_profile())
        await client.set_alias("fraud", "champion", 2)
    return hashlib.sha256(small_mlp(seed=2)).hexdigest()


async def test_score_a_registered_version_here_and_on_a_local_dask_cluster(
    registry_address: str, tmp_path: Path
) -> None:
    sha256 = await _publish(registry_address, tmp_path)
    x = features(5000)
    pq.write_table(pa.table({"x": list_column(x)}), tmp_path / "in.parquet", row_group_size=1000)

    code, out, err = await _cli(
        registry_address, "score", "fraud@champion",
        "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
        "--partition-rows", "1000",
    )  # fmt: skip
    assert code == 0, err
    assert "scored 5,000 of 5,000 rows with fraud:2" in out
    assert f"sha256:{sha256[:12]}" in out
    (expected,) = reference(small_mlp(seed=2), {"x": x})
    np.testing.assert_allclose(
        read_outputs(tmp_path / "out.parquet"), expected, rtol=1e-6, atol=1e-6
    )
    meta = pq.read_schema(tmp_path / "out.parquet").metadata
    assert meta[b"modelhub.model"] == b"fraud"
    assert meta[b"modelhub.version"] == b"2"
    assert meta[b"modelhub.sha256"] == sha256.encode()
    assert meta[b"modelhub.reference"] == b"fraud@champion"

    code, out, err = await _cli(
        registry_address, "score", "fraud@champion",
        "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "dask.parquet"),
        "--partition-rows", "1000", "--scheduler", "local:2",
    )  # fmt: skip
    assert code == 0, err
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(tmp_path / "out.parquet"))


async def test_csv_columns_named_by_the_versions_data_profile(
    registry_address: str, tmp_path: Path
) -> None:
    await _publish(registry_address, tmp_path)
    x = features(300)
    table = pa.table(
        {"id": pa.array(np.arange(300) * 7)} | {n: x[:, i] for i, n in enumerate(NAMES)}
    )
    pacsv.write_csv(table, tmp_path / "in.csv")
    code, out, err = await _cli(
        registry_address, "score", "fraud:2", "--input", str(tmp_path / "in.csv"),
        "--output", str(tmp_path / "out.csv"), "--id-column", "id",
    )  # fmt: skip
    assert code == 0, err
    assert "errors: 0 rows" in out
    scored = pacsv.read_csv(tmp_path / "out.csv")
    assert scored.column_names[:2] == ["id", "y[0]"]
    assert scored.column("id").to_pylist() == [i * 7 for i in range(300)]
    (expected,) = reference(small_mlp(seed=2), {"x": x})
    got = np.column_stack([scored.column(f"y[{k}]").to_numpy() for k in range(4)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert json.loads((tmp_path / "out.csv.meta.json").read_text())["modelhub.version"] == "2"

    # Version 1 has no profile: the same file does not say which column feeds what.
    code, _, err = await _cli(
        registry_address, "score", "fraud:1", "--input", str(tmp_path / "in.csv"),
        "--output", str(tmp_path / "v1.csv"),
    )  # fmt: skip
    assert code == 1
    assert "error: INVALID_ARGUMENT: no columns for input 'x' (FP32, 16 values per row)" in err


async def test_bad_references_and_arguments_fail_clearly(
    registry_address: str, tmp_path: Path
) -> None:
    await _publish(registry_address, tmp_path)
    pq.write_table(pa.table({"x": list_column(features(10))}), tmp_path / "in.parquet")
    cases = [
        (["fraud@nope"], "error: NOT_FOUND"),
        (["fraud:2", "--scheduler", "tcp://127.0.0.1:9"], "error: UNAVAILABLE: cannot reach"),
    ]
    for extra, message in cases:
        code, _, err = await _cli(
            registry_address, "score", *extra, "--input", str(tmp_path / "in.parquet"),
            "--output", str(tmp_path / "out.parquet"),
        )  # fmt: skip
        assert code == 1, (extra, err)
        assert message in err, (extra, err)
        assert "Traceback" not in err
