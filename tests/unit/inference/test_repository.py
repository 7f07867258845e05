"""Loading, routing, LRU eviction within the memory budget, draining, the local cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from modelhub.common.errors import (
    InvalidArtifactError,
    ModelNotReadyError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from modelhub.inference.repository import ServedVersion, VersionState
from modelhub.inference.request import InputTensor
from modelhub.inference.spec import BatchingOverrides, LoadOverrides
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
    assert entry.memory_bytes == len(source.blobs[("fraud", 2)])


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


async def test_lru_eviction_within_the_budget(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        source.add(name, 1, mlp_model(seed))
    size = len(source.blobs[("a", 1)])
    repository = make_repository(budget=int(size * 2.5))
    a = await repository.load("a", "1")
    await repository.load("b", "1")
    a.enter()  # a request for a: b is now the least recently used
    a.leave()
    await repository.load("c", "1")
    assert sorted(k[0] for k in (s.key for s in repository.served())) == ["a", "c"]
    # A request for the evicted one loads it again (evicting the LRU, a).
    b = await repository.acquire("b", "1")
    x = np.ones((2, 8), np.float32)
    assert (await _infer(b, x)).shape == (2, 4)
    assert sorted(s.key[0] for s in repository.served()) == ["b", "c"]
    assert repository.memory_used <= size * 2.5


async def test_pinned_versions_are_never_evicted(
    make_repository: RepositoryFactory, source: MemorySource
) -> None:
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        source.add(name, 1, mlp_model(seed))
    size = len(source.blobs[("a", 1)])
    repository = make_repository(budget=int(size * 2.5))
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
    await asyncio.sleep(0.05)
    assert old.state is VersionState.UNLOADING or old not in repository.served()


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
