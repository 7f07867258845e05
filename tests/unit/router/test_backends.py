"""Backend pools: only healthy backends get traffic, load spreads, connections are shared
and closed when no longer named."""

from __future__ import annotations

import pytest

from modelhub.router.backends import Backend, BackendPool, HealthChecker
from tests.unit.router.helpers import FakeConnection, backend_registry


def backends(n: int) -> list[Backend]:
    return [Backend(f"b{i}:1", FakeConnection(f"b{i}:1")) for i in range(n)]


def test_pick_spreads_over_healthy_backends() -> None:
    pool = BackendPool(backends(3))
    picks = [pool.pick().address for _ in range(300)]  # type: ignore[union-attr]
    assert {picks.count(a) for a in pool.addresses} == {100}


def test_unhealthy_backends_get_no_traffic_until_healthy() -> None:
    pool = BackendPool(backends(2))
    down = pool.backends[0]
    down.mark_down("test")
    assert {pool.pick().address for _ in range(50)} == {"b1:1"}  # type: ignore[union-attr]
    pool.backends[1].mark_down("test")
    assert pool.pick() is None
    down.mark_up()
    assert pool.pick() is down


def test_pick_prefers_fewer_calls_in_flight_and_honours_exclude() -> None:
    pool = BackendPool(backends(3))
    pool.backends[0].in_flight = 5
    pool.backends[1].in_flight = 1
    pool.backends[2].in_flight = 3
    assert {pool.pick().address for _ in range(10)} == {"b1:1"}  # type: ignore[union-attr]
    assert pool.pick(exclude=pool.backends[1]).address == "b2:1"  # type: ignore[union-attr]
    single = BackendPool(backends(1))
    assert single.pick(exclude=single.backends[0]) is None


async def test_registry_shares_connections_and_closes_unused_ones() -> None:
    registry = backend_registry(("d:1",))
    first = registry.pool(["a:1", "b:1"])
    second = registry.pool(["b:1", " ", "c:1"])
    assert first.backends[1] is second.backends[0]
    assert registry.pool([]) is registry.default_pool
    assert registry.pool(["a:1", "b:1"]) is first
    closing = registry.backend("c:1").connection
    await registry.retain([first])
    assert closing.closed
    assert [b.address for b in registry.backends()] == ["a:1", "b:1", "d:1"]


def test_empty_default_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="default backend list is empty"):
        backend_registry(())


async def test_health_checker_follows_probe_answers() -> None:
    registry = backend_registry(("a:1", "b:1"))
    answers = {"a:1": True, "b:1": False}

    async def probe(backend: Backend) -> bool:
        if backend.address == "b:1" and answers["b:1"] is None:
            raise OSError("refused")
        return bool(answers[backend.address])

    checker = HealthChecker(registry, probe, interval_s=3600)
    await checker.check_once()
    assert [b.healthy for b in registry.backends()] == [True, False]
    answers["b:1"] = True
    await checker.check_once()
    assert [b.healthy for b in registry.backends()] == [True, True]
    answers["b:1"] = None  # type: ignore[assignment]
    await checker.check_once()
    assert [b.healthy for b in registry.backends()] == [True, False]
