"""Scoring one partition: read its rows, check them, run them through one ONNX Runtime
session in batches, write the outputs beside each row's id, and the rows that could not
be scored with the reason.

The job never stops on data: a row that fails the column checks is an error row; a batch
that ONNX Runtime refuses is split in halves until the rows it refuses are found (each an
error row with ONNX Runtime's message), and the others are scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from modelhub.inference.runtime import OrtInstance, SessionFactory
from modelhub.inference.spec import RuntimeOptions
from modelhub.scoring.columns import ColumnPlan, Extracted
from modelhub.scoring.io import Block, InputFile, Partition, read_partition, write_parquet

RowsDone = Callable[[int], None]


class Scorer:
    """One ONNX Runtime session of a model version (blocking; one caller at a time)."""

    def __init__(
        self,
        path: Path,
        name: str,
        options: RuntimeOptions,
        factory: SessionFactory | None = None,
    ) -> None:
        factory = factory or SessionFactory()
        instances = factory.create(path, replace(options, instance_count=1), name)
        self._instance: OrtInstance = instances[0]
        session = self._instance.session
        self.provider = self._instance.provider
        self.output_names = [o.name for o in session.get_outputs()]
        self._run = session.run
        # A refused batch is expected (it is split to find the rows): ONNX Runtime's own
        # error log of each refusal would only repeat what the errors file says.
        self._quiet = ort.RunOptions()
        self._quiet.log_severity_level = 4

    def close(self) -> None:
        self._instance.close()

    def score(
        self,
        feeds: dict[str, np.ndarray],
        rows: int,
        batch_size: int,
        on_rows: RowsDone | None = None,
    ) -> tuple[dict[str, np.ndarray] | None, np.ndarray, dict[int, str]]:
        """Outputs of the rows that ran (None when none did), the mask of those rows,
        and ONNX Runtime's refusal of each other row."""
        pieces: list[list[np.ndarray]] = []
        ok = np.ones(rows, bool)
        failures: dict[int, str] = {}
        batch_size = max(1, batch_size)
        for lo in range(0, rows, batch_size):
            hi = min(lo + batch_size, rows)
            self._run_range(feeds, lo, hi, pieces, failures)
            if on_rows is not None:
                on_rows(hi - lo)
        for row in failures:
            ok[row] = False
        if not pieces:
            return None, ok, failures
        if len(pieces) == 1:
            merged = pieces[0]
        else:
            merged = [np.concatenate(parts) for parts in zip(*pieces, strict=True)]
        return dict(zip(self.output_names, merged, strict=True)), ok, failures

    def _run_range(
        self,
        feeds: dict[str, np.ndarray],
        lo: int,
        hi: int,
        pieces: list[list[np.ndarray]],
        failures: dict[int, str],
    ) -> None:
        try:
            feed = {name: array[lo:hi] for name, array in feeds.items()}
            outputs = self._run(None, feed, self._quiet)
        except Exception as exc:  # ONNX Runtime refused these rows: find which
            if hi - lo == 1:
                message = (
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                )
                failures[lo] = f"ONNX Runtime failed on this row: {message}"
                return
            mid = (lo + hi) // 2
            self._run_range(feeds, lo, mid, pieces, failures)
            self._run_range(feeds, mid, hi, pieces, failures)
            return
        pieces.append(list(outputs))


@dataclass(frozen=True, slots=True)
class PartitionTask:
    """Everything a worker needs to score one partition (small: sent over the network)."""

    source: InputFile
    partition: Partition
    plan: ColumnPlan
    batch_size: int
    part_path: str
    errors_path: str
    id_type: pa.DataType | None


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What one partition produced."""

    index: int
    rows: int  # scored
    errors: int
    seconds: float
    worker: str = ""


@dataclass(slots=True)
class PreparedBlock:
    """A partition read and checked, ready for the session."""

    block: Block
    extracted: Extracted
    started: float


def prepare_block(task: PartitionTask) -> PreparedBlock:
    """Read and check a partition (no session needed: overlaps with another's run)."""
    started = time.perf_counter()
    block = read_partition(task.source, task.partition, task.plan.read_columns())
    return PreparedBlock(block, task.plan.extract(block.table, block.positions), started)


def score_block(
    scorer: Scorer,
    task: PartitionTask,
    prepared: PreparedBlock,
    on_rows: RowsDone | None = None,
    worker: str = "",
) -> PartitionResult:
    """Run a prepared partition and write its part file (and errors part file)."""
    plan, extracted, block = task.plan, prepared.extracted, prepared.block
    batch = plan.max_batch or task.batch_size
    if on_rows is not None:
        on_rows(len(block.error_positions) + len(extracted.error_positions))
    outputs, ok, failures = scorer.score(extracted.feeds, extracted.rows, batch, on_rows)
    schema = plan.output_schema(task.id_type)
    scored = int(ok.sum())
    ids: pa.Array
    if plan.id_column:
        assert extracted.ids is not None
        ids = extracted.ids if scored == extracted.rows else extracted.ids.filter(pa.array(ok))
    else:
        ids = pa.array(extracted.positions if scored == extracted.rows else extracted.positions[ok])
    if outputs is None:
        table = schema.empty_table()
    else:
        arrays = [ids] + [o.to_arrow(outputs[o.name], scored) for o in plan.outputs]
        table = pa.Table.from_arrays(arrays, schema=schema)
    write_parquet(table, Path(task.part_path))
    errors = _errors_table(task, prepared, failures)
    if errors.num_rows:
        write_parquet(errors, Path(task.errors_path))
    else:
        Path(task.errors_path).unlink(missing_ok=True)
    return PartitionResult(
        task.partition.index,
        scored,
        errors.num_rows,
        time.perf_counter() - prepared.started,
        worker,
    )


def _errors_table(
    task: PartitionTask, prepared: PreparedBlock, failures: dict[int, str]
) -> pa.Table:
    plan, block, extracted = task.plan, prepared.block, prepared.extracted
    schema = plan.error_schema(task.id_type)
    failed = np.fromiter(sorted(failures), np.int64, len(failures))
    positions = np.concatenate(
        [
            np.asarray(block.error_positions, np.int64),
            extracted.error_positions,
            extracted.positions[failed],
        ]
    )
    if len(positions) == 0:
        return schema.empty_table()
    reasons = block.reasons + extracted.reasons + [failures[int(i)] for i in failed]
    order = np.argsort(positions, kind="stable")
    columns: list[pa.Array] = [pa.array(positions[order])]
    if plan.id_column:
        id_type = schema.field(plan.id_column).type
        id_parts = [pa.nulls(len(block.error_positions), id_type)]
        if extracted.error_ids is not None:
            id_parts.append(extracted.error_ids.cast(id_type))
        if extracted.ids is not None:
            id_parts.append(extracted.ids.take(pa.array(failed)).cast(id_type))
        columns.append(pa.concat_arrays(id_parts).take(pa.array(order)))
    columns.append(pa.array([reasons[i] for i in order.tolist()], pa.string()))
    return pa.Table.from_arrays(columns, schema=schema)


def score_partition(
    scorer: Scorer, task: PartitionTask, on_rows: RowsDone | None = None, worker: str = ""
) -> PartitionResult:
    """Read, check, score and write one partition."""
    return score_block(scorer, task, prepare_block(task), on_rows, worker)
