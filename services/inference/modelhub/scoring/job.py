"""A scoring job end to end: check the input against the model, cut it into partitions,
score the partitions not done yet (here, or on a Dask cluster), and assemble the output
and errors files from the parts.

    artifact = ModelArtifact.from_file("model.onnx", model="fraud", version=3)
    summary = score(artifact, "data.parquet", "scores.parquet")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelhub.common.errors import InternalError, InvalidArgumentError
from modelhub.common.onnx_schema import read_schema
from modelhub.inference.spec import Device, ModelSchema
from modelhub.scoring.columns import ColumnPlan, build_plan
from modelhub.scoring.engine import PartitionResult, PartitionTask
from modelhub.scoring.io import (
    CSV,
    PARQUET,
    InputFile,
    assemble,
    check_output_format,
    describe_input,
    file_format,
)
from modelhub.scoring.manifest import Manifest, clear

if TYPE_CHECKING:
    from distributed import Client

# (rows processed, rows in all): rows scored or sent to the errors file.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    """A model version on local disk, with what the output's metadata names."""

    model: str
    version: int
    sha256: str
    path: Path
    schema: ModelSchema
    reference: str = ""
    feature_names: tuple[str, ...] = ()  # the data profile's feature names, if any

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        model: str = "",
        version: int = 0,
        schema: ModelSchema | None = None,
        reference: str = "",
        feature_names: tuple[str, ...] = (),
    ) -> ModelArtifact:
        """An ONNX file (its schema read from the graph unless given)."""
        file = Path(path)
        data = file.read_bytes()
        return cls(
            model=model or file.stem,
            version=version,
            sha256=hashlib.sha256(data).hexdigest(),
            path=file.resolve(),
            schema=schema or read_schema(data),
            reference=reference,
            feature_names=feature_names,
        )


@dataclass(frozen=True, slots=True)
class ScoringOptions:
    """How to read, score and write (the defaults suit the local machine)."""

    input_format: str | None = None  # parquet | csv | npy; None: from the suffix
    output_format: str | None = None
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    id_column: str | None = None
    batch_size: int = 1024
    partition_rows: int = 100_000
    errors_path: Path | None = None  # default: <output>.errors.parquet|csv
    work_dir: Path | None = None  # default: <output>.parts
    keep_parts: bool = False
    restart: bool = False
    device: Device = Device.CPU
    # ONNX Runtime intra-op threads per session; 0: every core (local), 1 (Dask workers,
    # whose parallelism is their processes and threads).
    intra_op_threads: int = 0


@dataclass(frozen=True, slots=True)
class ScoringSummary:
    """What a job did."""

    output: Path
    errors_path: Path
    rows: int  # rows in the input
    scored: int
    errors: int
    partitions: int
    resumed: int  # partitions found done from an earlier run
    scored_now: int  # partitions scored by this run
    rows_now: int  # input rows in those partitions
    workers: tuple[str, ...]  # the Dask workers that scored them (empty: scored here)
    seconds: float
    metadata: dict[str, str]

    @property
    def rows_per_second(self) -> float:
        """Input rows processed per second by this run."""
        return self.rows_now / self.seconds if self.seconds > 0 else 0.0


def default_errors_path(output: Path, fmt: str) -> Path:
    """`scores.parquet` → `scores.errors.parquet`; CSV and NPY outputs → `….errors.csv`."""
    suffix = ".parquet" if fmt == PARQUET else ".csv"
    return output.with_name(f"{output.stem}.errors{suffix}")


class PreparedJob:
    """A job checked and ready: its partitions, what is done, where everything goes."""

    def __init__(
        self,
        artifact: ModelArtifact,
        source: InputFile,
        plan: ColumnPlan,
        manifest: Manifest,
        output: Path,
        output_format: str,
        errors_path: Path,
        options: ScoringOptions,
    ) -> None:
        self.artifact = artifact
        self.source = source
        self.plan = plan
        self.manifest = manifest
        self.output = output
        self.output_format = output_format
        self.errors_path = errors_path
        self.options = options
        self.id_type = source.column_types()[plan.id_column] if plan.id_column else None
        self.started = time.perf_counter()
        self.scored_now = 0
        self.rows_now = 0
        self.workers: set[str] = set()

    @property
    def label(self) -> str:
        return f"{self.artifact.model}:{self.artifact.version}"

    def task(self, index: int) -> PartitionTask:
        return PartitionTask(
            source=self.source,
            partition=self.manifest.partitions[index],
            plan=self.plan,
            batch_size=self.options.batch_size,
            part_path=str(self.manifest.part_path(index)),
            errors_path=str(self.manifest.errors_path(index)),
            id_type=self.id_type,
        )

    def pending(self) -> list[PartitionTask]:
        return [self.task(p.index) for p in self.manifest.pending()]

    def done_rows(self) -> int:
        parts = self.manifest.partitions
        return sum(parts[i].rows for i in self.manifest.done)

    def record(self, result: PartitionResult) -> None:
        self.manifest.record(result.index, result.rows, result.errors)
        self.scored_now += 1
        self.rows_now += self.manifest.partitions[result.index].rows
        if result.worker:
            self.workers.add(result.worker)

    def metadata(self, scored: int, errors: int) -> dict[str, str]:
        inputs = {
            name: spec["columns"] if spec["kind"] != "whole" else spec["columns"][0]
            for name, spec in self.plan.describe()["inputs"].items()
        }
        return {
            "modelhub.model": self.artifact.model,
            "modelhub.version": str(self.artifact.version),
            "modelhub.sha256": self.artifact.sha256,
            "modelhub.reference": self.artifact.reference,
            "modelhub.input": self.source.path,
            "modelhub.columns": json.dumps(inputs, separators=(",", ":")),
            "modelhub.rows": str(scored),
            "modelhub.errors": str(errors),
        }

    def finish(self) -> ScoringSummary:
        """Assemble the output and errors files from the parts (all must be done)."""
        manifest = self.manifest
        if not manifest.complete():
            missing = len(manifest.partitions) - len(manifest.done)
            raise InternalError(f"{missing} partition(s) of the job are not done")
        order = [p.index for p in manifest.partitions]
        scored = sum(manifest.done[i].rows for i in order)
        errors = sum(manifest.done[i].errors for i in order)
        metadata = self.metadata(scored, errors)
        assemble(
            [manifest.part_path(i) for i in order],
            self.plan.output_schema(self.id_type),
            self.output,
            self.output_format,
            metadata,
            scored,
        )
        errors_format = PARQUET if self.errors_path.suffix.lower() in (".parquet", ".pq") else CSV
        assemble(
            [manifest.errors_path(i) for i in order if manifest.done[i].errors],
            self.plan.error_schema(self.id_type),
            self.errors_path,
            errors_format,
            metadata,
            errors,
        )
        if not self.options.keep_parts:
            clear(manifest.directory)
        return ScoringSummary(
            output=self.output,
            errors_path=self.errors_path,
            rows=self.source.rows,
            scored=scored,
            errors=errors,
            partitions=len(order),
            resumed=manifest.resumed_count,
            scored_now=self.scored_now,
            rows_now=self.rows_now,
            workers=tuple(sorted(self.workers)),
            seconds=time.perf_counter() - self.started,
            metadata=metadata,
        )


def _check_paths(source: InputFile, output: Path, errors: Path, work: Path) -> None:
    paths = {"input": Path(source.path), "output": output, "errors file": errors}
    seen: dict[Path, str] = {}
    for role, path in paths.items():
        other = seen.get(path)
        if other:
            raise InvalidArgumentError(
                f"the {other} and the {role} are the same file {str(path)!r}", field="output"
            )
        seen[path] = role
    if work in seen:
        raise InvalidArgumentError(f"the work directory is the {seen[work]}", field="work_dir")


def prepare(
    artifact: ModelArtifact,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: ScoringOptions,
) -> PreparedJob:
    """Check everything that can be checked before scoring, and open the work directory
    (resuming the partitions an earlier run of the same job finished)."""
    if options.batch_size < 1 or options.partition_rows < 1:
        raise InvalidArgumentError(
            "the batch size and the partition size must be at least 1", field="batch_size"
        )
    input_format = file_format(input_path, options.input_format, "input")
    output = Path(output_path).resolve()
    output_format = file_format(output, options.output_format, "output")
    source, partitions = describe_input(input_path, input_format, options.partition_rows)
    plan = build_plan(
        artifact.schema,
        source.column_types(),
        model=artifact.model,
        mapping=options.columns,
        feature_names=artifact.feature_names,
        id_column=options.id_column,
        array_column=source.array,
    )
    id_type = source.column_types()[plan.id_column] if plan.id_column else None
    check_output_format(plan.output_schema(id_type), output_format)
    errors = (options.errors_path or default_errors_path(output, output_format)).resolve()
    work = (options.work_dir or output.with_name(output.name + ".parts")).resolve()
    _check_paths(source, output, errors, work)
    job: dict[str, Any] = {
        "input": source.identity(),
        "model": {
            "model": artifact.model,
            "version": artifact.version,
            "sha256": artifact.sha256,
        },
        "plan": plan.describe(),
        "partition_rows": options.partition_rows,
    }
    manifest = Manifest.open(work, job, partitions, restart=options.restart)
    return PreparedJob(artifact, source, plan, manifest, output, output_format, errors, options)


def score(
    artifact: ModelArtifact,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: ScoringOptions | None = None,
    *,
    progress: Progress | None = None,
    client: Client | None = None,
) -> ScoringSummary:
    """Score a file: here with one session on every core, or on the Dask cluster of
    `client` (whose workers must see the input and output paths)."""
    job = prepare(artifact, input_path, output_path, options or ScoringOptions())
    if client is None:
        from modelhub.scoring.local import run_local

        run_local(job, progress)
    else:
        from modelhub.scoring.distributed import run_distributed

        run_distributed(job, client, progress)
    return job.finish()
