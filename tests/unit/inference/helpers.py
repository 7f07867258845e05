"""Test helpers for the inference service: tiny ONNX models built with onnx.helper, an
in-memory model source, and a session run hook that can hold runs back (a "deliberately
slow model" whose speed the test controls, without timing assumptions)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelhub.common.errors import InvalidArtifactError, NotFoundError, RevisionCompactedError
from modelhub.common.onnx_schema import read_schema
from modelhub.inference.runtime import RunFn
from modelhub.inference.source import (
    DEFAULT_REFERENCE,
    LATEST,
    EventType,
    SourceEvent,
)
from modelhub.inference.spec import VersionInfo

ONNX_TYPES = {
    "FP32": TensorProto.FLOAT,
    "FP16": TensorProto.FLOAT16,
    "FP64": TensorProto.DOUBLE,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "BOOL": TensorProto.BOOL,
}


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def double_model(datatype: str, width: int = 3) -> bytes:
    """[-1, width] → y = x + x (BOOL: y = not x)."""
    onnx_type = ONNX_TYPES[datatype]
    node = (
        helper.make_node("Not", ["x"], ["y"])
        if datatype == "BOOL"
        else helper.make_node("Add", ["x", "x"], ["y"])
    )
    graph = helper.make_graph(
        [node],
        f"double_{datatype.lower()}",
        [helper.make_tensor_value_info("x", onnx_type, ["batch", width])],
        [helper.make_tensor_value_info("y", onnx_type, ["batch", width])],
    )
    return _model(graph)


def mlp_model(seed: int = 0, inputs: int = 8, hidden: int = 16, outputs: int = 4) -> bytes:
    """float32 [-1, inputs] → Gemm → Relu → Gemm → [-1, outputs]; `seed` picks weights
    (different seeds: different answers, as two versions of one model)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((inputs, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, outputs)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "b2")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        [w1, b1, w2, b2],
    )
    return _model(graph)


def two_io_model() -> bytes:
    """x float32 [-1, 3], z int64 [-1, 2] → sum float32 [-1, 1] (row sums of x),
    twice int64 [-1, 2] (z + z)."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["sum"], keepdims=1),
            helper.make_node("Add", ["z", "z"], ["twice"]),
        ],
        "two_io",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("z", TensorProto.INT64, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("twice", TensorProto.INT64, ["batch", 2]),
        ],
        [axes],
    )
    return _model(graph)


def ragged_model() -> bytes:
    """float32 [-1, -1] → row sums [-1, 1]: requests with different widths never share a
    batch."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
        "ragged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [axes],
    )
    return _model(graph)


def fixed_model() -> bytes:
    """float32 [2, 3] → x + x: a fixed first dimension, so never batched."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return _model(graph)


def describe(model: str, version: int, data: bytes) -> VersionInfo:
    try:
        schema = read_schema(data)
    except InvalidArtifactError:
        schema = None  # a broken artifact: the registry would have refused it
    return VersionInfo(
        model=model,
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        schema=schema,
    )


class MemorySource:
    """An in-memory ModelSource: versions, aliases, and a watch feed the test drives."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, int], bytes] = {}
        self.aliases: dict[tuple[str, str], int] = {}
        self.downloads: list[tuple[str, int]] = []
        self.resolves: list[tuple[str, str]] = []
        self.corrupt_next_download = False
        self._streams: list[asyncio.Queue[SourceEvent | BaseException | None]] = []
        self.watch_calls: list[int] = []
        self.history: list[SourceEvent] = []  # live events, for replay after reconnects
        self.snapshot: list[SourceEvent] = []

    def add(self, model: str, version: int, data: bytes) -> VersionInfo:
        self.blobs[(model, version)] = data
        return describe(model, version, data)

    async def resolve(self, model: str, reference: str) -> VersionInfo:
        self.resolves.append((model, reference))
        versions = sorted(v for (m, v) in self.blobs if m == model)
        if not versions:
            raise NotFoundError(f"model {model!r} not found")
        if reference in (DEFAULT_REFERENCE, LATEST):
            version = self.aliases.get((model, "champion"), versions[-1])
            if reference == LATEST:
                version = versions[-1]
        elif reference.isdigit():
            version = int(reference)
        else:
            if (model, reference) not in self.aliases:
                raise NotFoundError(f"alias {reference!r} not found")
            version = self.aliases[(model, reference)]
        if (model, version) not in self.blobs:
            raise NotFoundError(f"version {version} of {model!r} not found")
        return describe(model, version, self.blobs[(model, version)])

    async def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        self.downloads.append((info.model, info.version))
        data = self.blobs[(info.model, info.version)]
        if self.corrupt_next_download:
            self.corrupt_next_download = False
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    async def watch(self, start_revision: int) -> AsyncIterator[SourceEvent]:
        self.watch_calls.append(start_revision)
        queue: asyncio.Queue[SourceEvent | BaseException | None] = asyncio.Queue()
        if start_revision == 0:
            for event in self.snapshot:
                queue.put_nowait(event)
            revision = max([e.revision for e in self.history] + [1])
            queue.put_nowait(SourceEvent(EventType.SYNCED, revision))
        else:
            for event in self.history:
                if event.revision > start_revision:
                    queue.put_nowait(event)
        self._streams.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._streams.remove(queue)

    def emit(self, event: SourceEvent) -> None:
        """A live change: sent to open watch streams and kept for replays."""
        self.history.append(event)
        for queue in self._streams:
            queue.put_nowait(event)

    def break_streams(self, error: BaseException | None = None) -> None:
        """Fail (or end) every open watch stream."""
        for queue in list(self._streams):
            queue.put_nowait(error)

    async def close(self) -> None:
        return None


class CompactingSource(MemorySource):
    """A MemorySource whose history before `floor` is gone (OUT_OF_RANGE on resume)."""

    def __init__(self) -> None:
        super().__init__()
        self.floor = 0

    async def watch(self, start_revision: int) -> AsyncIterator[SourceEvent]:
        if 0 < start_revision < self.floor:
            self.watch_calls.append(start_revision)
            raise RevisionCompactedError(f"revision {start_revision} is compacted")
        async for event in super().watch(start_revision):
            yield event


@dataclass
class RunGate:
    """A session run hook: records what each run of the chosen models saw and, while
    closed, holds those runs (in the executor thread) until `open()`."""

    models: Sequence[str] = ()
    runs: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)
    _open: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def __call__(self, name: str, run: RunFn) -> RunFn:
        model = name.split("/")[0]
        if self.models and model not in self.models:
            return run

        def gated(outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            self.runs.append((name, {k: np.array(v) for k, v in feeds.items()}))
            self.entered.set()
            if not self._open.wait(timeout=30):
                raise TimeoutError("run gate never opened")
            return run(outputs, feeds)

        return gated

    def rows_seen(self, model: str) -> list[int]:
        return [next(iter(f.values())).shape[0] for n, f in self.runs if n.startswith(f"{model}/")]
