"""The embedded default: the partitions scored here, one after another, by one ONNX
Runtime session using every core, while a reader thread reads and checks the next
partition (ONNX Runtime releases the GIL while it runs)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from modelhub.inference.spec import RuntimeOptions
from modelhub.scoring.engine import Scorer, prepare_block, score_block

if TYPE_CHECKING:
    from modelhub.scoring.job import PreparedJob, Progress


def available_cores() -> int:
    """The cores this process may run on (respects taskset and cgroup CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_local(job: PreparedJob, progress: Progress | None = None) -> None:
    """Score the job's pending partitions in this process."""
    tasks = job.pending()
    total = job.source.rows
    done = job.done_rows()
    if progress is not None:
        progress(done, total)
    if not tasks:
        return
    threads = job.options.intra_op_threads or available_cores()
    scorer = Scorer(
        job.artifact.path,
        job.label,
        RuntimeOptions(device=job.options.device, intra_op_threads=threads),
    )

    def on_rows(rows: int) -> None:
        nonlocal done
        done += rows
        if progress is not None:
            progress(done, total)

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="score-read") as reader:
            upcoming = reader.submit(prepare_block, tasks[0])
            for position, task in enumerate(tasks):
                prepared = upcoming.result()
                if position + 1 < len(tasks):
                    upcoming = reader.submit(prepare_block, tasks[position + 1])
                job.record(score_block(scorer, task, prepared, on_rows))
    finally:
        scorer.close()
