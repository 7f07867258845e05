"""ONNX Runtime sessions: execution provider choice, thread settings, warm-up.

CUDA is used when it really works, not merely when it is compiled in: the GPU wheel lists
`CUDAExecutionProvider` even without a GPU or CUDA libraries, and a session then falls
back to CPU with a logged error. So the factory probes once with a one-node model and
reads `session.get_providers()`, and every session checks what it really got.

A model whose inputs or outputs this server cannot carry is refused when its first session
exists (`check_servable`), before the others are built. String tensors cross the session
boundary as ONNX Runtime wants them: object arrays of `str` in (`ModelSignature.prepare`
decodes them), object arrays of `bytes` out (`OrtInstance.timed_run` encodes them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelhub.common.errors import (
    FailedPreconditionError,
    InvalidArtifactError,
    ModelNotReadyError,
)
from modelhub.inference.codec import bytes_elements
from modelhub.inference.signature import ModelSignature, check_servable, schema_from_session
from modelhub.inference.spec import Device, RuntimeOptions

log = logging.getLogger("modelhub.inference.runtime")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

RunFn = Callable[[Sequence[str] | None, dict[str, np.ndarray]], list[np.ndarray]]
# Wraps a session's run function (instrumentation, fault injection in tests).
RunHook = Callable[[str, RunFn], RunFn]


def _probe_model() -> bytes:
    """The smallest valid model (Identity on a float), for the CUDA probe."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    return bytes(model.SerializeToString())


def _closed_run(_names: Sequence[str] | None, _feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    raise ModelNotReadyError("the model version's session was closed (it was unloaded)")


class OrtInstance:
    """One ONNX Runtime session of a version and the thread that runs it.

    `close()` drops this object's references to the session (its run function included),
    so that the session, its weights and its arena are freed as soon as the instance is
    closed, whoever still holds the instance."""

    def __init__(self, name: str, session: ort.InferenceSession, run: RunFn) -> None:
        self.name = name
        self._session: ort.InferenceSession | None = session
        self.provider = session.get_providers()[0]
        self._run = run
        # Outputs that are string tensors: answered as bytes, the BYTES representation.
        self._string_outputs = tuple(
            i for i, o in enumerate(session.get_outputs()) if o.type == "tensor(string)"
        )
        # One thread per session: runs of one instance never overlap, and a slow model
        # occupies only its own threads.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")

    def timed_run(self, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
        start = time.perf_counter()
        outputs = self._run(None, feeds)
        if self._string_outputs:
            outputs = list(outputs)
            for index in self._string_outputs:
                outputs[index] = bytes_elements(outputs[index])
        return outputs, time.perf_counter() - start

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            raise ModelNotReadyError(f"session {self.name} is closed")
        return self._session

    def close(self) -> None:
        """Stop the thread and let the session go (a run in progress keeps it until it
        returns)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._session = None
        self._run = _closed_run


class SessionFactory:
    """Creates sessions with the right providers and threads. Blocking: call from a thread."""

    def __init__(self, run_hook: RunHook | None = None, *, cpu_memory_arena: bool = True) -> None:
        self._run_hook = run_hook
        self._cpu_memory_arena = cpu_memory_arena
        self._cuda: bool | None = None
        self._lock = threading.Lock()
        self._initialized = False

    def initialize(self, device: Device) -> None:
        """Pay the process-wide one-time costs (ONNX Runtime's environment, the CUDA probe)
        now, so that they are not counted in the memory of the first version measured."""
        with self._lock:
            if not self._initialized:
                ort.InferenceSession(_probe_model(), providers=[CPU]).run(
                    None, {"x": np.zeros(1, np.float32)}
                )
                self._initialized = True
        if device is not Device.CPU:
            self.cuda_usable()

    def cuda_usable(self) -> bool:
        """Whether a CUDA session really runs on the GPU here (probed once)."""
        with self._lock:
            if self._cuda is None:
                self._cuda = self._probe_cuda()
            return self._cuda

    @staticmethod
    def _probe_cuda() -> bool:
        if CUDA not in ort.get_available_providers():
            return False
        # A failed CUDA provider logs errors through the default logger; here they are
        # expected, so silence it for the probe and restore ORT's default (warning).
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(_probe_model(), providers=[CUDA, CPU])
        except Exception as exc:
            log.info("CUDA execution provider unusable: %s", exc)
            return False
        finally:
            ort.set_default_logger_severity(2)
        usable = bool(session.get_providers()[0] == CUDA)
        log.info("CUDA execution provider %s", "usable" if usable else "not usable: using CPU")
        return usable

    def providers(self, device: Device) -> list[str]:
        if device is Device.CPU:
            return [CPU]
        if self.cuda_usable():
            return [CUDA, CPU]
        if device is Device.GPU:
            raise FailedPreconditionError(
                "device GPU was requested but the CUDA execution provider does not work on "
                "this server",
                reason="GPU_UNAVAILABLE",
            )
        return [CPU]

    def create(self, path: Path, options: RuntimeOptions, name: str) -> list[OrtInstance]:
        """`options.instance_count` sessions of the model at `path`."""
        providers = self.providers(options.device)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = max(1, options.intra_op_threads)
        session_options.inter_op_num_threads = max(1, options.inter_op_threads)
        session_options.graph_optimization_level = _OPTIMIZATION.get(
            options.graph_optimization, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        session_options.log_severity_level = 3
        # The arena keeps the largest intermediate buffers a run needed (counted in the
        # version's measured memory, freed with the session); off, runs allocate and free.
        session_options.enable_cpu_mem_arena = self._cpu_memory_arena
        # On failure every session built so far is closed: an exception's traceback
        # (kept a while by callers) must not keep a model's memory alive.
        instances: list[OrtInstance] = []
        try:
            for index in range(max(1, options.instance_count)):
                instance = self._open(path, session_options, providers, name, index)
                instances.append(instance)
                if index == 0:  # before building more of a model that cannot be served
                    check_servable(
                        schema_from_session(
                            instance.session.get_inputs(), instance.session.get_outputs()
                        ),
                        name,
                    )
                if options.device is Device.GPU and instance.provider != CUDA:
                    raise FailedPreconditionError(
                        f"model {name} did not get the CUDA execution provider",
                        reason="GPU_UNAVAILABLE",
                    )
        except BaseException:
            for instance in instances:
                instance.close()
            raise
        return instances

    def _open(
        self,
        path: Path,
        session_options: ort.SessionOptions,
        providers: list[str],
        name: str,
        index: int,
    ) -> OrtInstance:
        try:
            session = ort.InferenceSession(str(path), session_options, providers=list(providers))
        except Exception as exc:
            raise InvalidArtifactError(f"ONNX Runtime cannot load model {name}: {exc}") from exc
        run: RunFn = session.run
        if self._run_hook is not None:
            run = self._run_hook(name, run)
        return OrtInstance(f"{name}#{index}", session, run)


def warm_up(
    instance: OrtInstance, signature: ModelSignature, rows: Sequence[int], repeats: int = 2
) -> list[tuple[int, float]]:
    """Run zero-filled batches of each size in `rows` (dynamic dimensions other than the
    batch set to 1) so that lazy allocations happen now, not on the first request.
    Returns (rows, seconds) of the timed runs, to seed the cost curve."""
    timings = []
    for size in rows:
        feeds = {}
        for spec in signature.inputs:
            shape = [d if d >= 0 else 1 for d in spec.shape]
            if signature.batchable:
                shape[0] = size
            if spec.strings:  # empty strings, as ONNX Runtime takes them
                feeds[spec.name] = np.full(shape, "", dtype=object)
                continue
            dtype = spec.dtype if spec.dtype is not None else np.dtype("float32")
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
        instance.timed_run(feeds)  # the first run of a size pays one-time costs
        for _ in range(repeats):
            _, seconds = instance.timed_run(feeds)
            timings.append((size if signature.batchable else 1, seconds))
    return timings
