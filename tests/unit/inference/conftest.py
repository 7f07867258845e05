"""Fixtures for the inference unit tests: a repository over an in-memory source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from modelhub.inference.cache import ArtifactCache
from modelhub.inference.metrics import InferenceMetrics
from modelhub.inference.repository import ModelRepository
from modelhub.inference.runtime import RunHook, SessionFactory
from modelhub.inference.spec import BatchingPolicy, Device, LoadOptions, RuntimeOptions
from tests.unit.inference.helpers import MemorySource

DEFAULTS = LoadOptions(
    BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0, max_queue_size=64),
    RuntimeOptions(device=Device.CPU),
)

RepositoryFactory = Callable[..., ModelRepository]


@pytest.fixture
def source() -> MemorySource:
    return MemorySource()


@pytest.fixture
async def make_repository(tmp_path: Path, source: MemorySource) -> AsyncIterator[RepositoryFactory]:
    made: list[ModelRepository] = []

    def make(
        *,
        budget: int = 1 << 30,
        estimate_factor: float = 1.25,
        load_on_demand: bool = True,
        run_hook: RunHook | None = None,
        resolve_ttl_s: float = 60.0,
        model_source: object = None,
    ) -> ModelRepository:
        src = model_source or source
        repository = ModelRepository(
            src,  # type: ignore[arg-type]
            ArtifactCache(tmp_path / "cache", src),  # type: ignore[arg-type]
            SessionFactory(run_hook),
            InferenceMetrics(CollectorRegistry()),
            defaults=DEFAULTS,
            memory_budget_bytes=budget,
            memory_estimate_factor=estimate_factor,
            load_on_demand=load_on_demand,
            resolve_ttl_s=resolve_ttl_s,
        )
        made.append(repository)
        return repository

    yield make
    for repository in made:
        await repository.close()
