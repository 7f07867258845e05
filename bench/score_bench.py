"""Batch scoring throughput: `modelhub score` against raw ONNX Runtime, and Dask with two
workers against one, measured in one run on the same machine.

    .venv/bin/python bench/score_bench.py [--rows 1000000] [--cores 0,1] [--repeat 2]

1. Writes `mlp` (bench/models.py: float32 [-1,256] → 1024 → 1024 → 16) and a Parquet file
   of `--rows` rows (one fixed-size list column `x`, row groups of `--partition-rows`).
2. Raw ONNX Runtime in this process (pinned to `--cores`, intra-op threads = that many):
   rows/s per batch size (`--seconds` each, on rows already in memory), then one full pass
   over every row at the best batch size — the reference.
3. `modelhub score` locally (this process, same cores and threads, the best batch size):
   Parquet in → checks → ONNX Runtime → part files → the final Parquet file; rows/s end to
   end. Target: ≥ 0.8× the reference.
4. Dask: a scheduler and workers started as `dask` processes, each worker pinned with
   `taskset` to one core (one process, one thread, one intra-op thread); the job with one
   worker, then with one worker per core. Target: two workers ≥ 1.6× one. Beside it, the
   cores' own scaling: one single-threaded ONNX Runtime process per core, all at once,
   against one alone (no file, no Dask) — the ceiling for any job on these cores.

With `--repeat N` the compared runs alternate N times and medians are reported (with each
run's ratio): on a shared machine single runs vary a lot. Prints a table; every ratio comes
from figures of this run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from models import mlp  # noqa: E402

from modelhub.scoring.job import ModelArtifact, ScoringOptions, score  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))


def write_input(path: Path, rows: int, row_group: int) -> None:
    rng = np.random.default_rng(0)
    schema = pa.schema([("x", pa.list_(pa.float32(), 256))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, row_group):
            n = min(row_group, rows - start)
            x = rng.standard_normal((n, 256), dtype=np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 256)
            writer.write_table(pa.table({"x": column}, schema=schema))


def session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def raw_sweep(model: bytes, threads: int, batches: list[int], seconds: float) -> dict[int, float]:
    sess = session(model, threads)
    pool = np.random.default_rng(1).standard_normal((max(batches) * 8, 256), dtype=np.float32)
    result = {}
    for batch in batches:
        for i in range(3):
            sess.run(None, {"x": pool[i * batch : (i + 1) * batch]})
        rows, start, i = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            lo = (i * batch) % (len(pool) - batch + 1)
            sess.run(None, {"x": pool[lo : lo + batch]})
            rows += batch
            i += 1
        result[batch] = rows / (time.perf_counter() - start)
    return result


_PARALLEL = """
import sys, time, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((int(sys.argv[2]), 256), dtype=np.float32)
s.run(None, {"x": x}); rows = 0; start = time.perf_counter()
while time.perf_counter() - start < float(sys.argv[3]):
    s.run(None, {"x": x}); rows += len(x)
print(rows / (time.perf_counter() - start))
"""


def raw_parallel(model: Path, cores: list[int], batch: int, seconds: float) -> float:
    """One single-threaded ONNX Runtime process per core, all at once: total rows/s (what
    the cores give to independent sessions, the ceiling of a Dask job on them)."""
    procs = [
        subprocess.Popen(
            ["taskset", "-c", str(c), sys.executable, "-c", _PARALLEL, str(model), str(batch),
             str(seconds)],
            stdout=subprocess.PIPE, text=True,
        )
        for c in cores
    ]  # fmt: skip
    return sum(float(p.communicate()[0]) for p in procs)


def raw_full_pass(model: bytes, threads: int, path: Path, batch: int) -> float:
    """Every row of the file, already in memory, at `batch` rows per run: rows/s."""
    x = pq.read_table(path).column("x").combine_chunks()
    data = np.asarray(x.flatten().to_numpy()).reshape(len(x), 256)
    sess = session(model, threads)
    sess.run(None, {"x": data[:batch]})
    start = time.perf_counter()
    for lo in range(0, len(data), batch):
        sess.run(None, {"x": data[lo : lo + batch]})
    return len(data) / (time.perf_counter() - start)


@contextlib.contextmanager
def dask_cluster(workdir: Path, cores: list[int]) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A `dask scheduler` and one pinned `dask worker` per core in `cores`."""
    scheduler_file = workdir / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    log = (workdir / "dask.log").open("ab")
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            stdout=log, stderr=log,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the Dask scheduler did not start (see dask.log)")
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for core in cores:
            procs.append(
                subprocess.Popen(
                    ["taskset", "-c", str(core), DASK, "worker", address, "--nworkers", "1",
                     "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                     "--local-directory", str(workdir / f"worker-{core}")],
                    stdout=log, stderr=log,
                )
            )  # fmt: skip
        yield address, procs
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def dask_run(
    artifact: ModelArtifact, data: Path, out: Path, cores: list[int], batch: int, rows: int
) -> tuple[float, int]:
    from distributed import Client

    with dask_cluster(out.parent, cores) as (address, _), Client(address) as client:
        client.wait_for_workers(len(cores), timeout=120)
        # Warm every worker (imports, its session) outside the measured run.
        warm_in = out.with_name("warm-input.parquet")
        write_input(warm_in, 1000 * len(cores), 1000)
        warm = ScoringOptions(batch_size=batch, partition_rows=1000, restart=True)
        score(artifact, warm_in, out.with_name("warm.parquet"), warm, client=client)
        summary = score(
            artifact, data, out, ScoringOptions(batch_size=batch, partition_rows=rows, restart=True), client=client
        )  # fmt: skip
    return summary.rows / summary.seconds, len(summary.workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partition-rows", type=int, default=50_000)
    parser.add_argument("--cores", default="0,1", help="cores for every measurement")
    parser.add_argument("--batches", default="64,256,1024,4096")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size (sweep)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--only", default="local,dask", help="local (with raw ORT), dask")
    parser.add_argument("--repeat", type=int, default=1, help="runs, interleaved (medians)")
    args = parser.parse_args()
    cores = [int(c) for c in args.cores.split(",")]
    threads = len(cores)
    os.sched_setaffinity(0, cores)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="score-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = mlp()
    (workdir / "mlp.onnx").write_bytes(info.onnx_bytes)
    artifact = ModelArtifact.from_file(workdir / "mlp.onnx", model="mlp", version=1)
    data = workdir / "input.parquet"
    print(f"writing {args.rows:,} rows of mlp input to {data} …", file=sys.stderr)
    write_input(data, args.rows, args.partition_rows)

    only = set(args.only.split(","))
    batches = [int(b) for b in args.batches.split(",")]
    sweep = raw_sweep(info.onnx_bytes, threads, batches, args.seconds)
    best = max(sweep, key=lambda b: sweep[b])
    rows: list[tuple[object, ...]] = [
        (f"ORT in-process, batch {b}", threads, b, f"{r:,.0f}", "", "") for b, r in sweep.items()
    ]
    if "local" in only:
        options = ScoringOptions(
            batch_size=best,
            partition_rows=args.partition_rows,
            intra_op_threads=threads,
            restart=True,
        )
        raws, locals_ = [], []
        for attempt in range(args.repeat):
            print(
                f"raw full pass at batch {best}, then local (run {attempt + 1}) …", file=sys.stderr
            )
            raws.append(raw_full_pass(info.onnx_bytes, threads, data, best))
            local = score(artifact, data, workdir / "local.parquet", options)
            locals_.append(local.rows / local.seconds)
        raw, local_rate = float(np.median(raws)), float(np.median(locals_))
        each = "" if args.repeat == 1 else " [" + ", ".join(f"{s / r:.2f}" for r, s in zip(raws, locals_, strict=True)) + "]"  # fmt: skip
        rows += [
            ("ORT in-process, best batch, every row", threads, best, f"{raw:,.0f}", "1.00", ""),
            ("modelhub score (local, Parquet → Parquet)", threads, best, f"{local_rate:,.0f}",
             f"{local_rate / raw:.2f}{each}", "≥ 0.80"),
        ]  # fmt: skip
    if "dask" in only:
        ones, twos, used = [], [], 0
        for attempt in range(args.repeat):
            print(f"Dask, 1 worker, then {len(cores)} (run {attempt + 1}) …", file=sys.stderr)
            ones.append(dask_run(artifact, data, workdir / "dask1.parquet", cores[:1], best, args.partition_rows)[0])  # fmt: skip
            rate, used = dask_run(artifact, data, workdir / "dask2.parquet", cores, best, args.partition_rows)  # fmt: skip
            twos.append(rate)
        one, two = float(np.median(ones)), float(np.median(twos))
        single = raw_parallel(workdir / "mlp.onnx", cores[:1], best, args.seconds * 3)
        parallel = raw_parallel(workdir / "mlp.onnx", cores, best, args.seconds * 3)
        each = "" if args.repeat == 1 else " [" + ", ".join(f"{t / o:.2f}" for o, t in zip(ones, twos, strict=True)) + "]"  # fmt: skip
        rows += [
            (f"ORT, 1 process on core {cores[0]}", "1×1", best, f"{single:,.0f}", "1.00", ""),
            (f"ORT, {len(cores)} processes, one per core, at once", f"{len(cores)}×1", best,
             f"{parallel:,.0f}", f"{parallel / single:.2f}", "(the cores' own scaling)"),
            (f"Dask, 1 worker (core {cores[0]})", "1×1", best, f"{one:,.0f}", "1.00", ""),
            (f"Dask, {len(cores)} workers (cores {args.cores}; {used} used)", f"{len(cores)}×1",
             best, f"{two:,.0f}", f"{two / one:.2f}{each}", "≥ 1.60"),
        ]  # fmt: skip
    header = ("case", "threads", "batch", "rows/s", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"\nmlp (256 → 1024 → 1024 → 16), {args.rows:,} rows, partitions of "
        f"{args.partition_rows:,}, cores {args.cores}, {ort.__version__} ONNX Runtime"
    )
    for row in [header, *rows]:
        print(
            "  ".join(
                str(v).rjust(w) if i else str(v).ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
