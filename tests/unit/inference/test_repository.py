"""Loading, routing, LRU eviction within the memory budget, draining, the local cache."""

from __future__ import annotations

import asyncio
import os
import weakref
from pathlib import Path

import numpy as np
import pytest

from modelhub.common.errors import (
    InvalidArtifactError,
    ModelNotReadyError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
)
from modelhub.inference.memory import heap_bytes
from modelhub.inference.repository import ServedVersion, VersionState
from modelhub.inference.request import InputTensor
from modelhub.inference.spec import BatchingOverrides, LoadOverrides
from tests.onnx_models import large_matmul
from tests.polling import wait_for
from tests.unit.inference.conftest import RepositoryFactory
from tests.unit.inference.helpers import MemorySource, mlp_model


async def _infer(served: ServedVersion, x: np.ndarray) -> np.ndarray:
    served.enter()
    try:
        arrays, rows, key = served.signature.prepare([InputTensor("x", "FP32", x.shape, x)])
        (y,) = await served.batcher.submit(arrays, rows, key)
        return y
    finally:
        served.leave()


async def test_load_on_demand_resolves_default_and_aliases(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    source.add("fraud", 1, mlp_model(1))
    source.add("fraud", 2, mlp_model(2))
    repository = make_repository()
    assert repository.lookup("fraud", "") is None
    served = await repository.acquire("fraud", "")
    assert served.info.version == 2  # latest
    assert repository.lookup("fraud", "") is served  # cached resolution
    source.aliases[("fraud", "champion")] = 1
    repository.invalidate("fraud")
    assert (await repository.acquire("fraud", "")).info.version == 1
    assert (await repository.acquire("fraud", "champion")).info.version == 1
    assert (await repository.acquire("fraud", "2")) is served
    [entry] = [e for e in repository.index() if e.version == 2]
    assert entry.state is VersionState.READY
    assert entry.provider == "CPUExecutionProvider"
    # The budget counts what the sessions were measured to take: never less than the file.
    assert served.measured_bytes > 0
    assert entry.memory_bytes == served.memory_bytes
    assert entry.memory_bytes == max(served.measured_bytes, len(source.blobs[("fraud", 2)]))


async def test_unknown_models_are_not_found_and_misses_are_cached(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    repository = make_repository()
    for _ in range(3):
        with pytest.raises(NotFoundError):
            await repository.acquire("ghost", "")
    assert source.resolves == [("ghost", "")]


async def test_without_load_on_demand(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    source.add("fraud", 1, mlp_model(1))
    repository = make_repository(load_on_demand=False)
    with pytest.raises(NotFoundError):
        await repository.acquire("fraud", "1")
    await repository.load("fraud", "1")
    assert (await repository.acquire("fraud", "")).info.version == 1
    source.add("fraud", 2, mlp_model(2))
    with pytest.raises(ModelNotReadyError):
        await repository.acquire("fraud", "2")


def _add_large(source: MemorySource, tmp_path: Path, names: str, mib: int = 8) -> int:
    """Versions 1 of models `names` (one letter each): `mib` MiB MatMuls, large enough for
    their measured memory to be mostly their weights. Returns the file size."""
    data = large_matmul(tmp_path / "large.onnx", mib << 20).read_bytes()
    for name in names:
        source.add(name, 1, data)
    return len(data)


async def test_lru_eviction_within_the_budget(
    make_repository: RepositoryFactory, source: MemorySource, tmp_path: Path
) -> None:
    # Each takes its file size and a little more (measured): two fit in 2.7×, three don't.
    size = _add_large(source, tmp_path, "abc")
    repository = make_repository(budget=int(size * 2.7))
    a = await repository.load("a", "1")
    await repository.load("b", "1")
    a.enter()  # a request for a: b is now the least recently used
    a.leave()
    await repository.load("c", "1")
    assert sorted(k[0] for k in (s.key for s in repository.served())) == ["a", "c"]
    # A request for the evicted one loads it again (evicting the LRU, a).
    b = await repository.acquire("b", "1")
    x = np.ones((2, b.signature.inputs[0].shape[1]), np.float32)
    assert (await _infer(b, x)).shape == x.shape
    assert sorted(s.key[0] for s in repository.served()) == ["b", "c"]
    assert repository.memory_used == sum(s.memory_bytes for s in repository.served())
    assert repository.memory_used <= size * 2.7


async def test_pinned_versions_are_never_evicted(
    make_repository: RepositoryFactory, source: MemorySource, tmp_path: Path
) -> None:
    size = _add_large(source, tmp_path, "abc")
    repository = make_repository(budget=int(size * 2.7))
    repository.set_pins({("a", 1): frozenset({"d1"}), ("b", 1): frozenset({"d2"})})
    await repository.load("a", "1")
    await repository.load("b", "1")
    with pytest.raises(ResourceExhaustedError, match="memory"):
        await repository.load("c", "1")
    [failed] = [e for e in repository.index() if e.model == "c"]
    assert failed.state is VersionState.FAILED
    repository.set_pins({("a", 1): frozenset({"d1"})})  # b no longer deployed: evictable
    await repository.load("c", "1")
    assert sorted(s.key[0] for s in repository.served()) == ["a", "c"]


async def test_memory_is_measured_reported_and_released_on_unload(
    make_repository: RepositoryFactory, source: MemorySource, tmp_path: Path
) -> None:
    size = _add_large(source, tmp_path, "m", mib=16)
    repository = make_repository()
    heap_before = heap_bytes()
    served = await repository.load("m", "1")
    # Measured (the C heap's bytes in use): the weights at least, as one live allocation.
    assert served.measured_bytes >= size
    assert served.memory_bytes == served.measured_bytes
    [entry] = repository.index()
    assert entry.memory_bytes == served.memory_bytes == repository.memory_used
    metrics = repository._metrics
    assert metrics.version_memory_bytes.labels("m", "1")._value.get() == served.memory_bytes
    assert metrics.memory_bytes._value.get() == served.memory_bytes
    # The next load of the same artifact is admitted on what this one measured.
    assert repository.estimate(served.info, served.options) == served.memory_bytes
    session = weakref.ref(served.instances[0].session)
    heap_loaded = heap_bytes()
    await repository.unload("m", 1)
    del served
    # Nothing keeps the session alive: its memory went back to the C heap.
    assert session() is None
    assert heap_loaded - heap_bytes() >= size * 0.9
    assert heap_bytes() - heap_before < size * 0.1
    assert repository.memory_used == 0
    assert metrics.memory_bytes._value.get() == 0
    assert ("m", "1") not in {
        tuple(s.labels.values()) for s in metrics.version_memory_bytes.collect()[0].samples
    }


async def test_a_measured_figure_over_the_budget_refuses_the_load(
    make_repository: RepositoryFactory, source: MemorySource, tmp_path: Path
) -> None:
    """Admitted on its file size (factor 1), the version measures more than the budget
    once its sessions exist: refused, released, and the other versions keep serving."""
    size = _add_large(source, tmp_path, "l")
    source.add("small", 1, mlp_model(1))
    repository = make_repository(budget=int(size * 1.5), estimate_factor=1.0)
    small = await repository.load("small", "1")
    # Warm-up at 2048 rows: ONNX Runtime's arena keeps the 2048-row output (~1.4× the
    # weights), which the measurement sees.
    big_batches = LoadOverrides(BatchingOverrides(max_batch_size=2048))
    heap_before = heap_bytes()
    with pytest.raises(ResourceExhaustedError, match="measured when it loaded") as refused:
        await repository.load("l", "1", big_batches)
    assert refused.value.reason == "MEMORY_BUDGET"
    assert heap_bytes() - heap_before < size * 0.1  # its sessions were released
    assert [s.key for s in repository.served()] == [("small", 1)]
    [failed] = [e for e in repository.index() if e.model == "l"]
    assert failed.state is VersionState.FAILED and "measured" in failed.reason
    assert repository.memory_used == small.memory_bytes
    x = np.ones((1, 8), np.float32)
    assert (await _infer(small, x)).shape == (1, 4)
    # Within the budget with the default batch size: the same version loads.
    assert (await repository.load("l", "1")).memory_bytes <= size * 1.5


async def test_loading_on_demand_needs_a_caller_that_may_load(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    source.add("m", 1, mlp_model(1))
    source.add("deployed", 1, mlp_model(2))
    repository = make_repository()
    with pytest.raises(PermissionDeniedError, match="LoadModel") as denied:
        await repository.acquire("m", "1", may_load=False)
    assert denied.value.reason == "LOAD_NOT_PERMITTED"
    assert repository.index() == []  # nothing loaded, nothing loading
    # A version a deployment names loads for anyone.
    repository.set_pins({("deployed", 1): frozenset({"d"})})
    assert (await repository.acquire("deployed", "", may_load=False)).key == ("deployed", 1)
    # Once loaded, anyone may use it.
    await repository.acquire("m", "1", may_load=True)
    assert (await repository.acquire("m", "1", may_load=False)).key == ("m", 1)
    # Loading on demand off: nobody loads that way.
    off = make_repository(load_on_demand=False)
    with pytest.raises(NotFoundError):
        await off.acquire("m", "1", may_load=True)


async def test_unload_waits_for_in_flight_requests(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    source.add("m", 1, mlp_model(1))
    repository = make_repository()
    served = await repository.load("m", "1")
    served.enter()
    unloading = asyncio.ensure_future(repository.unload("m", 1))
    await asyncio.sleep(0.05)
    assert not unloading.done()
    assert repository.lookup("m", "1") is None  # no new requests reach it
    assert [e.state for e in repository.index()] == [VersionState.UNLOADING]
    served.leave()
    await unloading
    assert repository.index() == []
    assert repository.memory_used == 0
    with pytest.raises(NotFoundError):
        await repository.unload("m", 1)


async def test_loading_with_other_settings_swaps_in_a_new_copy(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    source.add("m", 1, mlp_model(1))
    repository = make_repository()
    old = await repository.load("m", "1")
    old.enter()  # in flight on the old copy during the swap
    overrides = LoadOverrides(BatchingOverrides(max_batch_size=4))
    new = await repository.load("m", "1", overrides)
    assert new is not old
    assert repository.lookup("m", "1") is new
    assert new.options.batching.max_batch_size == 4
    x = np.ones((1, 8), np.float32)
    np.testing.assert_allclose(await _infer(old, x), await _infer(new, x))
    old.leave()
    await wait_for(lambda: old.state is VersionState.UNLOADING or old not in repository.served())


async def test_a_broken_artifact_fails_the_load(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    source.add("bad", 1, b"not an onnx model")
    repository = make_repository()
    with pytest.raises(InvalidArtifactError):
        await repository.load("bad", "1")
    [entry] = repository.index()
    assert entry.state is VersionState.FAILED
    assert "cannot load" in entry.reason
    assert repository.memory_used == 0


async def test_cache_refetches_a_corrupt_entry(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    info = source.add("m", 1, mlp_model(1))
    repository = make_repository()
    await repository.load("m", "1")
    await repository.unload("m", 1)
    path = repository.cache.path_of(info.sha256)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    await repository.load("m", "1")
    assert source.downloads == [("m", 1), ("m", 1)]
    assert path.read_bytes() == source.blobs[("m", 1)]


async def test_a_download_with_the_wrong_digest_is_refused(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    info = source.add("m", 1, mlp_model(1))
    repository = make_repository()
    source.corrupt_next_download = True
    with pytest.raises(UnavailableError, match="sha256"):
        await repository.load("m", "1")
    assert not repository.cache.path_of(info.sha256).exists()
    await repository.load("m", "1")  # the next attempt downloads again and succeeds


async def test_artifact_cache_keeps_within_its_size_limit(tmp_path: Path) -> None:
    from modelhub.inference.cache import ArtifactCache

    source = MemorySource()
    infos = [source.add("m", v, bytes([v]) * 100) for v in (1, 2, 3)]
    cache = ArtifactCache(tmp_path / "cache", source, max_bytes=250)
    first = await cache.get(infos[0])
    second = await cache.get(infos[1])
    os.utime(first, (1, 1))  # version 1: least recently used
    os.utime(second, (2, 2))
    await cache.get(infos[1])  # a hit refreshes version 2
    await cache.get(infos[2])  # 300 bytes > 250: the least recently used entry goes
    assert not first.exists()
    assert second.exists() and cache.path_of(infos[2].sha256).exists()
    # A version evicted from disk is simply fetched again.
    assert (await cache.get(infos[0])).read_bytes() == bytes([1]) * 100
    assert source.downloads == [("m", 1), ("m", 2), ("m", 3), ("m", 1)]
