"""Scoring files on this machine: outputs equal to in-process ONNX Runtime, bad rows in the
errors file, every format, and a stopped job resuming where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.scoring.job import ModelArtifact, ScoringOptions, score
from tests.onnx_models import two_inputs
from tests.unit.scoring.helpers import (
    FEATURES,
    OUTPUTS,
    features,
    list_column,
    lookup,
    read_outputs,
    reference,
    small_mlp,
    write_parquet_with_bad_rows,
)


@pytest.fixture
def mlp(tmp_path: Path) -> ModelArtifact:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(small_mlp())
    return ModelArtifact.from_file(path, model="fraud", version=3, reference="fraud@champion")


def test_a_100k_row_parquet_file_scores_like_in_process_onnx_runtime(
    tmp_path: Path, mlp: ModelArtifact
) -> None:
    x = features(100_000)
    bad = write_parquet_with_bad_rows(tmp_path / "in.parquet", x)
    options = ScoringOptions(id_column="txn", partition_rows=20_000, batch_size=1000)
    summary = score(mlp, tmp_path / "in.parquet", tmp_path / "scores.parquet", options)

    good = np.setdiff1d(np.arange(len(x)), list(bad))
    assert (summary.rows, summary.scored, summary.errors) == (100_000, len(good), len(bad))
    assert (summary.partitions, summary.resumed) == (5, 0)
    table = pq.read_table(tmp_path / "scores.parquet")
    assert table.column_names == ["txn", "y"]
    assert table.column("txn").to_pylist() == [f"t{i:06d}" for i in good]
    (expected,) = reference(small_mlp(), {"x": x[good]})
    np.testing.assert_allclose(
        read_outputs(tmp_path / "scores.parquet"), expected, rtol=1e-6, atol=1e-6
    )
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["modelhub.model"] == "fraud"
    assert meta["modelhub.version"] == "3"
    assert meta["modelhub.sha256"] == mlp.sha256
    assert meta["modelhub.reference"] == "fraud@champion"
    assert meta["modelhub.rows"] == str(len(good))

    errors = pq.read_table(tmp_path / "scores.errors.parquet").to_pylist()
    assert [e["row"] for e in errors] == sorted(bad)
    for error in errors:
        assert error["txn"] == f"t{error['row']:06d}"
        assert bad[error["row"]] in error["reason"], error
    assert not (tmp_path / "scores.parquet.parts").exists()  # parts removed once assembled


def test_csv_in_csv_out_with_unparseable_lines(tmp_path: Path, mlp: ModelArtifact) -> None:
    x = features(50)
    header = ",".join(f"x[{i}]" for i in range(FEATURES))
    lines = [",".join(repr(float(v)) for v in row) for row in x]
    lines[3] = lines[3].replace(lines[3].split(",")[2], "abc", 1)
    lines[10] = lines[10] + ",1.0"  # one field too many
    lines[20] = ",".join(["1"] * 3 + [""] * (FEATURES - 3))  # empty values: nulls
    (tmp_path / "in.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    summary = score(
        mlp, tmp_path / "in.csv", tmp_path / "out.csv", ScoringOptions(partition_rows=7)
    )
    assert (summary.scored, summary.errors) == (47, 3)

    out = pacsv.read_csv(tmp_path / "out.csv")
    assert out.column_names == ["row_id"] + [f"y[{k}]" for k in range(OUTPUTS)]
    good = [i for i in range(50) if i not in (3, 10, 20)]
    assert out.column("row_id").to_pylist() == good
    (expected,) = reference(small_mlp(), {"x": x[good]})
    got = np.column_stack([out.column(f"y[{k}]").to_numpy() for k in range(OUTPUTS)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

    errors = pacsv.read_csv(tmp_path / "out.errors.csv").to_pylist()
    assert [e["row"] for e in errors] == [3, 10, 20]
    assert "column 'x[2]' is 'abc': not a number" in errors[0]["reason"]
    assert "line has 17 field(s); the header names 16" in errors[1]["reason"]
    assert "column 'x[3]' is null" in errors[2]["reason"]
    meta = json.loads((tmp_path / "out.csv.meta.json").read_text())
    assert meta["modelhub.sha256"] == mlp.sha256
    assert meta["modelhub.errors"] == "3"


def test_npy_in_npy_out(tmp_path: Path, mlp: ModelArtifact) -> None:
    x = features(1234)
    np.save(tmp_path / "in.npy", x)
    summary = score(
        mlp, tmp_path / "in.npy", tmp_path / "out.npy", ScoringOptions(partition_rows=500)
    )
    assert (summary.scored, summary.errors, summary.partitions) == (1234, 0, 3)
    out = np.load(tmp_path / "out.npy")
    assert out.dtype.names == ("row_id", "y")
    np.testing.assert_array_equal(out["row_id"], np.arange(1234))
    (expected,) = reference(small_mlp(), {"x": x})
    np.testing.assert_allclose(out["y"], expected, rtol=1e-6, atol=1e-6)
    assert json.loads((tmp_path / "out.npy.meta.json").read_text())["modelhub.version"] == "3"
    assert (tmp_path / "out.errors.csv").read_text().strip() == "row,reason"


def test_several_inputs_of_several_types(tmp_path: Path) -> None:
    (tmp_path / "two.onnx").write_bytes(two_inputs())
    model = ModelArtifact.from_file(tmp_path / "two.onnx")
    rows = 300
    rng = np.random.default_rng(5)
    a = rng.integers(-50, 50, (rows, 2))
    b = rng.integers(-50, 50, (rows, 2))
    scores = rng.standard_normal((rows, 3))
    table = pa.table(
        {
            "a": list_column(a),
            "b[0]": pa.array(b[:, 0].astype(np.float64)),  # whole numbers as floats: fine
            "b[1]": pa.array(b[:, 1].astype(str)),  # and as text
            "scores": list_column(scores.astype(np.float32)),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    summary = score(model, tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert (summary.scored, summary.errors) == (rows, 0)
    out = pq.read_table(tmp_path / "out.parquet")
    widened = scores.astype(np.float32).astype(np.float64)  # the column is float32
    z, label = reference(two_inputs(), {"a": a, "b": b, "scores": widened})
    np.testing.assert_array_equal(read_outputs(tmp_path / "out.parquet", "z", 2), z)
    assert out.column("label").to_pylist() == label.tolist()


def test_rows_onnx_runtime_refuses_are_found_and_the_others_scored(tmp_path: Path) -> None:
    (tmp_path / "lookup.onnx").write_bytes(lookup(5))
    model = ModelArtifact.from_file(tmp_path / "lookup.onnx")
    indices = np.arange(2000) % 5
    indices[[17, 999, 1500]] = [9, -40, 5]
    pq.write_table(pa.table({"i": indices}), tmp_path / "in.parquet")
    summary = score(
        model, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoringOptions(batch_size=256)
    )
    assert (summary.scored, summary.errors) == (1997, 3)
    errors = pq.read_table(tmp_path / "out.errors.parquet").to_pylist()
    assert [e["row"] for e in errors] == [17, 999, 1500]
    assert all(e["reason"].startswith("ONNX Runtime failed on this row:") for e in errors)
    out = pq.read_table(tmp_path / "out.parquet")
    good = np.setdiff1d(np.arange(2000), [17, 999, 1500])
    assert out.column("row_id").to_pylist() == good.tolist()
    assert out.column("y").to_pylist() == (indices[good] * 10.0).tolist()


class _Stop(Exception):
    pass


def test_a_stopped_job_resumes_where_it_stopped(tmp_path: Path, mlp: ModelArtifact) -> None:
    x = features(10_000)
    pq.write_table(pa.table({"x": list_column(x)}), tmp_path / "in.parquet", row_group_size=1000)
    options = ScoringOptions(partition_rows=1000, batch_size=250)
    whole = score(mlp, tmp_path / "in.parquet", tmp_path / "whole.parquet", options)
    assert whole.scored_now == 10

    def stop_after_3000_rows(done: int, total: int) -> None:
        if done >= 3000:
            raise _Stop

    with pytest.raises(_Stop):
        score(
            mlp,
            tmp_path / "in.parquet",
            tmp_path / "out.parquet",
            options,
            progress=stop_after_3000_rows,
        )
    assert not (tmp_path / "out.parquet").exists()
    manifest = json.loads((tmp_path / "out.parquet.parts" / "manifest.json").read_text())
    assert len(manifest["done"]) == 2  # the third stopped after its last batch, unrecorded

    seen: list[int] = []
    resumed = score(
        mlp,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        options,
        progress=lambda done, total: seen.append(done),
    )
    assert (resumed.resumed, resumed.scored_now, resumed.scored) == (2, 8, 10_000)
    assert seen[0] == 2000  # the progress starts from the rows already done
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_a_work_directory_of_another_job_is_not_mixed_in(
    tmp_path: Path, mlp: ModelArtifact
) -> None:
    pq.write_table(pa.table({"x": list_column(features(100))}), tmp_path / "in.parquet")
    options = ScoringOptions(partition_rows=10, keep_parts=True)
    score(mlp, tmp_path / "in.parquet", tmp_path / "out.parquet", options)
    assert (tmp_path / "out.parquet.parts" / "manifest.json").exists()

    other = ScoringOptions(partition_rows=20, keep_parts=True)
    with pytest.raises(FailedPreconditionError, match=r"the partition size differs.*--restart"):
        score(mlp, tmp_path / "in.parquet", tmp_path / "out.parquet", other)
    restarted = score(
        mlp,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        ScoringOptions(partition_rows=20, restart=True),
    )
    assert (restarted.partitions, restarted.resumed) == (5, 0)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_outputs_a_format_cannot_hold_are_refused_before_scoring(tmp_path: Path) -> None:
    (tmp_path / "two.onnx").write_bytes(two_inputs())
    model = ModelArtifact.from_file(tmp_path / "two.onnx")
    table = pa.table(
        {
            "a": list_column(np.ones((3, 2), np.int64)),
            "b": list_column(np.ones((3, 2), np.int64)),
            "scores": list_column(np.ones((3, 3))),
            "key": ["p", "q", "r"],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(InvalidArgumentError, match=r"the id column holds string.*NPY"):
        score(
            model,
            tmp_path / "in.parquet",
            tmp_path / "out.npy",
            ScoringOptions(id_column="key"),
        )
    with pytest.raises(InvalidArgumentError, match="the input and the output are the same"):
        score(model, tmp_path / "in.parquet", tmp_path / "in.parquet")
