"""The same job on a Dask distributed cluster: one task per partition, scored by the
workers, each of which keeps one ONNX Runtime session per model version.

The model's bytes travel once per worker, inside a worker plugin (so a worker that joins
or restarts mid-job gets them too); the plugin checks their sha256 and opens the session
when the worker's first partition needs it. Tasks read their partition from the input
path and write their part files under the work directory, so the workers and the driver
must see the same paths (a shared volume, as in the compose environment and the
Kubernetes example in docs/scoring.md). The driver records each finished partition in
the manifest; when a task fails (a worker killed more often than the scheduler allows,
the cluster gone), the job stops with the partitions done so far kept, and the same
command resumes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed import Client, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from modelhub.common.errors import FailedPreconditionError, ModelHubError, UnavailableError
from modelhub.inference.spec import Device, RuntimeOptions
from modelhub.scoring import engine
from modelhub.scoring.engine import PartitionResult, PartitionTask, Scorer

if TYPE_CHECKING:
    from modelhub.scoring.job import PreparedJob, Progress


def plugin_name(sha256: str) -> str:
    return f"modelhub-scoring-{sha256[:16]}"


class ModelSessions(WorkerPlugin):
    """Installed in every worker: a model version's bytes, and its session once needed."""

    def __init__(
        self, label: str, sha256: str, model: bytes, device: Device, intra_op_threads: int
    ) -> None:
        self.name = plugin_name(sha256)
        self.label = label
        self.sha256 = sha256
        self.model = model
        self.device = device
        self.intra_op_threads = intra_op_threads
        self._lock: threading.Lock | None = None
        self._scorer: Scorer | None = None
        self._path: Path | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_lock=None, _scorer=None, _path=None)
        return state

    def setup(self, worker: Any) -> None:
        self._lock = threading.Lock()
        self._path = Path(worker.local_directory) / f"model-{self.sha256}.onnx"

    def scorer(self) -> Scorer:
        """This worker's session of the version (opened by the first task that asks)."""
        assert self._lock is not None, "plugin not set up"
        assert self._path is not None
        with self._lock:
            if self._scorer is None:
                digest = hashlib.sha256(self.model).hexdigest()
                if digest != self.sha256:
                    raise FailedPreconditionError(
                        f"the model bytes sent to this worker have sha256 {digest}, not "
                        f"{self.sha256}",
                        reason="ARTIFACT_DIGEST_MISMATCH",
                    )
                self._path.write_bytes(self.model)
                self._scorer = Scorer(
                    self._path,
                    self.label,
                    RuntimeOptions(device=self.device, intra_op_threads=self.intra_op_threads),
                )
            return self._scorer

    def teardown(self, worker: Any) -> None:
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def score_partition_task(name: str, task: PartitionTask) -> PartitionResult:
    """A Dask task: score one partition with this worker's session of the version."""
    worker = get_worker()
    plugin = worker.plugins[name]
    assert isinstance(plugin, ModelSessions)
    # Through the module, so that a test can wrap it in the worker processes.
    return engine.score_partition(plugin.scorer(), task, worker=str(worker.address))


def run_distributed(job: PreparedJob, client: Client, progress: Progress | None = None) -> None:
    """Score the job's pending partitions on the cluster of `client`."""
    tasks = job.pending()
    total = job.source.rows
    done = job.done_rows()
    if progress is not None:
        progress(done, total)
    if not tasks:
        return
    artifact = job.artifact
    plugin = ModelSessions(
        job.label,
        artifact.sha256,
        artifact.path.read_bytes(),
        job.options.device,
        job.options.intra_op_threads or 1,
    )
    try:
        client.register_plugin(plugin, name=plugin.name)
    except Exception as exc:
        raise UnavailableError(
            f"cannot install the model on the Dask workers: {exc}", reason="DASK_UNAVAILABLE"
        ) from exc
    run = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            score_partition_task,
            plugin.name,
            task,
            key=f"modelhub-score-{run}-{task.partition.index:05d}",
            pure=False,
        )
        for task in tasks
    ]
    rows = {task.partition.index: task.partition.rows for task in tasks}
    try:
        for future in as_completed(futures):
            try:
                result: PartitionResult = future.result()
            except ModelHubError:
                raise  # the model or the files, not the cluster: a re-run would fail again
            except Exception as exc:
                remaining = len(job.manifest.partitions) - len(job.manifest.done)
                raise UnavailableError(
                    f"a partition failed on the Dask cluster ({type(exc).__name__}: {exc}); "
                    f"{len(job.manifest.done)} of {len(job.manifest.partitions)} partitions "
                    f"are done and recorded in {job.manifest.directory}: run the same command "
                    f"again to score the other {remaining}",
                    reason="PARTITION_FAILED",
                ) from exc
            job.record(result)
            done += rows[result.index]
            if progress is not None:
                progress(done, total)
    finally:
        with contextlib.suppress(Exception):
            client.cancel(futures)
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(plugin.name)
