"""The deployment watcher: snapshot, live changes, swaps, reconnects, compaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from modelhub.common.contract import EndpointAudit, EndpointSpec
from modelhub.common.errors import UnavailableError
from modelhub.inference.audit import AuditPolicies, AuditPolicy
from modelhub.inference.deployments import DeploymentWatcher
from modelhub.inference.repository import ModelRepository, VersionState
from modelhub.inference.source import (
    DeploymentSpec,
    EventType,
    ResourceKind,
    SourceEvent,
    VersionSelector,
)
from tests.unit.inference.conftest import RepositoryFactory
from tests.unit.inference.helpers import CompactingSource, MemorySource, mlp_model


def _deployment(name: str, model: str, *selectors: VersionSelector) -> DeploymentSpec:
    return DeploymentSpec(name, model, selectors)


def _put(revision: int, spec: DeploymentSpec) -> SourceEvent:
    return SourceEvent(
        EventType.PUT, revision, ResourceKind.DEPLOYMENT, spec.name, spec.model, spec
    )


async def _until(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def watching(
    make_repository: RepositoryFactory, source: MemorySource
) -> AsyncIterator[tuple[DeploymentWatcher, ModelRepository]]:
    repository = make_repository()
    watcher = DeploymentWatcher(source, repository, backoff_initial_s=0.01)
    source.add("fraud", 1, mlp_model(1))
    source.add("fraud", 2, mlp_model(2))
    source.snapshot = [_put(5, _deployment("fraud", "fraud", VersionSelector(version=1)))]
    watcher.start()
    yield watcher, repository
    await watcher.close()


async def test_snapshot_loads_and_routes_the_deployed_version(watching, source) -> None:
    watcher, repository = watching
    await asyncio.wait_for(watcher.synced.wait(), 10)
    served = repository.lookup("fraud", "")
    assert served is not None
    assert served.info.version == 1
    assert repository.is_pinned(("fraud", 1))
    [entry] = repository.index()
    assert entry.pinned
    assert entry.state is VersionState.READY


async def test_a_changed_deployment_swaps_versions(watching, source) -> None:
    watcher, repository = watching
    await asyncio.wait_for(watcher.synced.wait(), 10)
    old = repository.lookup("fraud", "")
    assert old is not None
    old.enter()  # a request in flight on version 1
    source.emit(_put(6, _deployment("fraud", "fraud", VersionSelector(version=2))))
    await _until(
        lambda: (
            repository.lookup("fraud", "") is not None
            and repository.lookup("fraud", "").info.version == 2
        )
    )
    # The old version drains before it goes.
    assert old.state is VersionState.UNLOADING
    old.leave()
    await _until(lambda: [s.key for s in repository.served()] == [("fraud", 2)])
    await _until(lambda: [e.version for e in repository.index()] == [2])
    assert watcher.revision == 6


async def test_deleting_the_deployment_unloads(watching, source) -> None:
    watcher, repository = watching
    await asyncio.wait_for(watcher.synced.wait(), 10)
    spec = _deployment("fraud", "fraud")
    source.emit(SourceEvent(EventType.DELETE, 7, ResourceKind.DEPLOYMENT, spec.name, "fraud"))
    await _until(lambda: repository.served() == [])
    assert repository.routes() == {}


async def test_reconnects_from_the_last_revision(watching, source) -> None:
    watcher, repository = watching
    await asyncio.wait_for(watcher.synced.wait(), 10)
    source.emit(SourceEvent(EventType.PROGRESS, 9))
    await _until(lambda: watcher.revision == 9)
    source.break_streams(UnavailableError("registry restarting"))
    # Missed while disconnected: replayed on resume.
    source.history.append(_put(10, _deployment("fraud", "fraud", VersionSelector(version=2))))
    await _until(lambda: len(source.watch_calls) >= 2)
    assert source.watch_calls[:2] == [0, 9]
    await _until(lambda: [s.key for s in repository.served()] == [("fraud", 2)])


async def test_compacted_revision_relists(make_repository: RepositoryFactory) -> None:
    source = CompactingSource()
    source.add("fraud", 1, mlp_model(1))
    source.add("fraud", 2, mlp_model(2))
    source.snapshot = [_put(3, _deployment("fraud", "fraud", VersionSelector(version=1)))]
    repository = make_repository(model_source=source)
    watcher = DeploymentWatcher(source, repository, backoff_initial_s=0.01)
    watcher.start()
    try:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        source.floor = 100
        source.snapshot = [_put(100, _deployment("fraud", "fraud", VersionSelector(version=2)))]
        source.break_streams(UnavailableError("gone"))
        await _until(lambda: 0 in source.watch_calls[1:])
        await _until(lambda: [s.key for s in repository.served()] == [("fraud", 2)])
    finally:
        await watcher.close()


async def test_alias_selector_follows_the_alias(make_repository, source) -> None:
    source.add("fraud", 1, mlp_model(1))
    source.add("fraud", 2, mlp_model(2))
    source.aliases[("fraud", "champion")] = 1
    source.snapshot = [_put(2, _deployment("fraud", "fraud", VersionSelector(alias="champion")))]
    repository = make_repository()
    watcher = DeploymentWatcher(source, repository, backoff_initial_s=0.01)
    watcher.start()
    try:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert repository.lookup("fraud", "champion").info.version == 1
        source.aliases[("fraud", "champion")] = 2
        source.emit(
            SourceEvent(
                EventType.PUT, 3, ResourceKind.ALIAS, "models/fraud/aliases/champion", "fraud"
            )
        )
        await _until(lambda: repository.lookup("fraud", "champion").info.version == 2)
        assert repository.lookup("fraud", "").info.version == 2
    finally:
        await watcher.close()


async def test_a_version_that_fails_to_load_keeps_the_old_route(watching, source) -> None:
    watcher, repository = watching
    await asyncio.wait_for(watcher.synced.wait(), 10)
    source.add("fraud", 3, b"broken")
    source.emit(_put(8, _deployment("fraud", "fraud", VersionSelector(version=3))))
    await _until(lambda: any(e.state is VersionState.FAILED for e in repository.index()))
    assert repository.lookup("fraud", "").info.version == 1


def _endpoint(revision: int, name: str, audit: EndpointAudit | None) -> SourceEvent:
    spec = EndpointSpec(name, (), audit=audit)
    return SourceEvent(EventType.PUT, revision, ResourceKind.ENDPOINT, spec.name, endpoint=spec)


async def test_endpoint_audit_policies_follow_the_feed_and_relists(
    make_repository: RepositoryFactory,
) -> None:
    source = CompactingSource()
    source.snapshot = [
        _endpoint(2, "a", EndpointAudit(1.0)),
        _endpoint(3, "b", EndpointAudit(0.5)),
    ]
    policies = AuditPolicies()
    watcher = DeploymentWatcher(
        source, make_repository(model_source=source), backoff_initial_s=0.01, audit=policies
    )
    watcher.start()
    try:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert policies.get("endpoints/a") == AuditPolicy(1.0)
        assert policies.get("endpoints/b") == AuditPolicy(0.5)
        # Live: a changed policy, a deleted endpoint.
        source.emit(_endpoint(4, "a", EndpointAudit(0.25, ("ssn",))))
        source.emit(SourceEvent(EventType.DELETE, 5, ResourceKind.ENDPOINT, "endpoints/b"))
        await _until(lambda: policies.get("endpoints/b") is None)
        assert policies.get("endpoints/a") == AuditPolicy(0.25, frozenset({"ssn"}))
        # A re-list (history compacted) replaces every policy with the snapshot's.
        source.floor = 100
        source.snapshot = [_endpoint(100, "c", EndpointAudit(1.0))]
        source.break_streams(UnavailableError("gone"))
        await _until(lambda: policies.get("endpoints/c") is not None)
        assert policies.get("endpoints/a") is None and len(policies) == 1
    finally:
        await watcher.close()
