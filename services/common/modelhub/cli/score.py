"""`modelhub score`: offline batch scoring of a registered version (the edge: registry
calls and arguments here, the job in `modelhub.scoring`).

    modelhub score fraud@champion --input data.parquet --output scores.parquet
    modelhub score fraud:3 --input data.csv --output scores.csv --id-column txn_id
    modelhub score fraud@champion --input /data/in.parquet --output /data/out.parquet \\
        --scheduler tcp://dask-scheduler:8786

Needs the modelhub-inference package with its `score` extra:
pip install 'modelhub-inference[score]'.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelhub.cli.session import inference_unit
from modelhub.client import RegistryClient
from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from modelhub.common.names import is_decimal

if TYPE_CHECKING:
    from modelhub.scoring.job import ModelArtifact, ScoringOptions, ScoringSummary

Progress = Callable[[int, int], None]


EXAMPLES = """examples:
  modelhub score fraud@champion --input data.parquet --output scores.parquet
  modelhub score fraud:3 -i data.csv -o scores.csv --id-column txn_id
  modelhub score fraud@champion -i in.parquet -o out.parquet --scheduler local:4
  modelhub score fraud@champion -i in.parquet -o out.parquet --scheduler tcp://dask:8786"""


def add_parser(groups: Any, common: argparse.ArgumentParser) -> None:
    """The `score` command's arguments (`common`: the options every command takes)."""
    p = groups.add_parser(
        "score",
        help="score a Parquet, CSV or NPY file with a model version (offline, batch)",
        description="Score every row of a file with a registered model version: locally "
        "on every core, or on a Dask cluster (--scheduler). Rows that cannot be scored go "
        "to an errors file with the reason; a stopped job resumes when run again. Needs "
        "the modelhub-inference package with its score extra.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    p.add_argument("reference", help="the version: fraud@champion, fraud:3, fraud/versions/3")
    p.add_argument("--input", "-i", required=True, help=".parquet, .csv or .npy")
    p.add_argument("--output", "-o", required=True, help=".parquet, .csv or .npy")
    p.add_argument(
        "--input-format",
        choices=("parquet", "csv", "npy"),
        help="the input's format (default: from its extension)",
    )
    p.add_argument(
        "--output-format",
        choices=("parquet", "csv", "npy"),
        help="the output's format (default: from its extension)",
    )
    p.add_argument(
        "--columns",
        action="append",
        default=[],
        metavar="INPUT=COL[,COL…]",
        help="columns feeding an input: one column carrying the whole row, or one per "
        "value (repeat for several inputs)",
    )
    p.add_argument("--id-column", help="copy this column next to the outputs (default: row_id)")
    p.add_argument("--errors", help="errors file (default: <output>.errors.parquet|csv)")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per ONNX Runtime run")
    p.add_argument(
        "--partition-rows", type=int, default=100_000, help="rows per partition (part file)"
    )
    p.add_argument(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786), or local[:N] for a local cluster of "
        "N one-thread worker processes; default: score here",
    )
    p.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="ONNX Runtime threads per session (default: every core here; 1 per Dask task)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "auto", "gpu"),
        default="cpu",
        help="where ONNX Runtime runs (default cpu; auto: GPU when it works)",
    )
    p.add_argument("--work-dir", help="part files and manifest (default: <output>.parts)")
    p.add_argument("--keep-parts", action="store_true", help="keep the part files afterwards")
    p.add_argument(
        "--restart", action="store_true", help="discard the parts of an earlier, different job"
    )


def parse_columns(values: list[str]) -> dict[str, tuple[str, ...]]:
    """`["x=a,b,c", "y=z"]` → {"x": ("a", "b", "c"), "y": ("z",)}."""
    mapping: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, sep, columns = value.partition("=")
        chosen = tuple(c.strip() for c in columns.split(",") if c.strip())
        if not sep or not name.strip() or not chosen:
            raise InvalidArgumentError(
                f"--columns {value!r}: expected INPUT=COLUMN[,COLUMN…]", field="columns"
            )
        if name.strip() in mapping:
            raise InvalidArgumentError(f"--columns names {name!r} twice", field="columns")
        mapping[name.strip()] = chosen
    return mapping


def local_workers(scheduler: str | None) -> int | None:
    """`local` → 0 (Dask's default count), `local:N` → N; None for a scheduler address
    (or none)."""
    if not scheduler or not (scheduler == "local" or scheduler.startswith("local:")):
        return None
    _, _, count = scheduler.partition(":")
    if count and (not is_decimal(count) or int(count) < 1):
        raise InvalidArgumentError(
            f"--scheduler {scheduler!r}: expected local or local:N (N ≥ 1)", field="scheduler"
        )
    return int(count or 0)


def _require_extra(distributed: bool) -> None:
    try:
        import pyarrow  # noqa: F401

        if distributed:
            import distributed as _  # noqa: F401
    except ImportError as exc:
        raise FailedPreconditionError(
            f"batch scoring needs the `score` extra ({exc.name} is not installed): "
            "pip install 'modelhub-inference[score]'",
            reason="MISSING_EXTRA",
        ) from None


def _options(args: argparse.Namespace) -> ScoringOptions:
    from modelhub.inference.spec import Device
    from modelhub.scoring.job import ScoringOptions

    return ScoringOptions(
        input_format=args.input_format,
        output_format=args.output_format,
        columns=parse_columns(args.columns),
        id_column=args.id_column,
        batch_size=args.batch_size,
        partition_rows=args.partition_rows,
        errors_path=Path(args.errors) if args.errors else None,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        keep_parts=args.keep_parts,
        restart=args.restart,
        device=Device(args.device),
        intra_op_threads=args.intra_op_threads,
    )


def _run_job(
    artifact: ModelArtifact,
    args: argparse.Namespace,
    options: ScoringOptions,
    progress: Progress | None,
) -> ScoringSummary:
    """Blocking: the job, with a Dask client when a scheduler is named."""
    from modelhub.scoring.job import score

    if not args.scheduler:
        return score(artifact, args.input, args.output, options, progress=progress)
    from distributed import Client, LocalCluster

    workers = local_workers(args.scheduler)
    if workers is not None:
        with (
            LocalCluster(
                n_workers=workers or None,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            return score(
                artifact, args.input, args.output, options, progress=progress, client=client
            )
    try:
        client = Client(args.scheduler)  # gives up after distributed.comm.timeouts.connect
    except (OSError, TimeoutError) as exc:
        raise UnavailableError(
            f"cannot reach the Dask scheduler {args.scheduler}: {exc}", reason="DASK_UNAVAILABLE"
        ) from exc
    with client:
        return score(artifact, args.input, args.output, options, progress=progress, client=client)


async def run(
    client: RegistryClient, args: argparse.Namespace, progress_bar: Callable[..., Progress]
) -> str:
    """Resolve and download the version (sha256 verified), then score. `progress_bar(label,
    unit="bytes")` makes a progress callback."""
    with inference_unit():
        _require_extra(bool(args.scheduler))
        from modelhub.common.onnx_schema import read_schema
        from modelhub.inference.registry_source import version_info
        from modelhub.scoring.job import ModelArtifact

    options = _options(args)
    local_workers(args.scheduler)  # checked before anything is downloaded
    version = await client.resolve(args.reference)
    info = version_info(version)
    with tempfile.TemporaryDirectory(prefix="modelhub-score-") as tmp:
        path = Path(tmp) / f"{info.sha256}.onnx"
        # By name: the version resolved above, even if the alias moves meanwhile.
        await client.download(version.name, path, progress_bar(f"downloading {version.name}"))
        schema = info.schema or read_schema(path.read_bytes())
        artifact = ModelArtifact(
            model=info.model,
            version=info.version,
            sha256=info.sha256,
            path=path,
            schema=schema,
            reference=args.reference,
            feature_names=tuple(f.name for f in version.data_profile.features),
        )
        progress = progress_bar(f"scoring {info.model}:{info.version}", unit="rows")
        summary = await asyncio.to_thread(_run_job, artifact, args, options, progress)
    resumed = f", {summary.resumed} resumed" if summary.resumed else ""
    return (
        f"scored {summary.scored:,} of {summary.rows:,} rows with {info.model}:{info.version} "
        f"(sha256:{info.sha256[:12]}) in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s; {summary.partitions} partitions{resumed})\n"
        f"output: {summary.output}\n"
        f"errors: {summary.errors:,} rows → {summary.errors_path}"
    )
