"""The same scoring job on a two-worker Dask cluster: the outputs of in-process ONNX
Runtime, the same files as a local run, bad rows in the errors file, and a job whose
worker is killed mid-job resuming to the same file."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

from modelhub.common.errors import UnavailableError
from modelhub.scoring.job import ModelArtifact, ScoringOptions, score
from tests.unit.scoring.helpers import (
    features,
    list_column,
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


def test_100k_rows_on_two_workers_match_onnx_runtime_and_the_local_run(
    tmp_path: Path, mlp: ModelArtifact, dask_client: Client
) -> None:
    x = features(100_000)
    bad = write_parquet_with_bad_rows(tmp_path / "in.parquet", x)
    options = ScoringOptions(id_column="txn", partition_rows=10_000, batch_size=2048)
    seen: list[tuple[int, int]] = []
    summary = score(
        mlp,
        tmp_path / "in.parquet",
        tmp_path / "dask.parquet",
        options,
        client=dask_client,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (summary.scored, summary.errors, summary.partitions) == (100_000 - 3, 3, 10)
    assert seen[-1] == (100_000, 100_000)

    good = np.setdiff1d(np.arange(len(x)), list(bad))
    (expected,) = reference(small_mlp(), {"x": x[good]})
    np.testing.assert_allclose(
        read_outputs(tmp_path / "dask.parquet"), expected, rtol=1e-6, atol=1e-6
    )
    errors = pq.read_table(tmp_path / "dask.errors.parquet").to_pylist()
    assert [(e["row"], e["txn"]) for e in errors] == [(r, f"t{r:06d}") for r in sorted(bad)]
    assert all(bad[e["row"]] in e["reason"] for e in errors)

    assert len(summary.workers) == 2  # both workers took part

    local = score(mlp, tmp_path / "in.parquet", tmp_path / "local.parquet", options)
    assert local.scored == summary.scored
    assert pq.read_table(tmp_path / "dask.parquet").equals(
        pq.read_table(tmp_path / "local.parquet")
    )
    assert pq.read_table(tmp_path / "dask.errors.parquet").equals(
        pq.read_table(tmp_path / "local.errors.parquet")
    )


class KillOnPartition(WorkerPlugin):
    """Kills (SIGKILL) the worker process that starts scoring partition `index` (installed
    in every worker, restarted ones too, until unregistered)."""

    name = "test-kill-on-partition"

    def __init__(self, index: int) -> None:
        self.index = index

    def setup(self, worker: Any) -> None:
        from modelhub.scoring import engine

        original = engine.score_partition
        index = self.index

        def dying(scorer: Any, task: Any, *args: Any, **kwargs: Any) -> Any:
            if task.partition.index == index:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(scorer, task, *args, **kwargs)

        dying.original = original  # type: ignore[attr-defined]
        engine.score_partition = dying  # type: ignore[assignment]

    def teardown(self, worker: Any) -> None:
        from modelhub.scoring import engine

        engine.score_partition = getattr(engine.score_partition, "original", engine.score_partition)


def test_a_worker_killed_mid_job_then_a_rerun_resumes_to_the_same_file(
    tmp_path: Path, mlp: ModelArtifact, dask_client: Client
) -> None:
    x = features(60_000, seed=11)
    pq.write_table(pa.table({"x": list_column(x)}), tmp_path / "in.parquet", row_group_size=6000)
    options = ScoringOptions(partition_rows=6000)
    whole = score(mlp, tmp_path / "in.parquet", tmp_path / "whole.parquet", options)

    dask_client.register_plugin(KillOnPartition(6))
    try:
        with pytest.raises(UnavailableError) as caught:
            score(
                mlp, tmp_path / "in.parquet", tmp_path / "out.parquet", options, client=dask_client
            )
    finally:
        dask_client.unregister_worker_plugin(KillOnPartition.name)
    assert caught.value.reason == "PARTITION_FAILED"
    assert "run the same command again" in caught.value.message
    assert not (tmp_path / "out.parquet").exists()

    dask_client.wait_for_workers(2, timeout=60)
    resumed = score(
        mlp, tmp_path / "in.parquet", tmp_path / "out.parquet", options, client=dask_client
    )
    assert resumed.resumed >= 1, "partitions finished before the kill are kept"
    assert resumed.resumed + resumed.scored_now == 10
    assert resumed.scored == 60_000
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert whole.scored == 60_000
