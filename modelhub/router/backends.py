"""Inference backends: one connection per address, shared by every pool naming it, with
health that both active checks and failed calls update.

A backend is healthy until proven otherwise. It turns unhealthy when a health check does
not answer SERVING or when a call fails at the transport level; an unhealthy backend gets
no traffic until a health check answers SERVING again. Transport (how to connect, how to
probe, how to close) is injected: this module holds the policy, the gRPC edge the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

log = logging.getLogger("modelhub.router.backends")

Connect = Callable[[str], Any]
Probe = Callable[["Backend"], Awaitable[bool]]
Disconnect = Callable[[Any], Awaitable[None]]


class Backend:
    """One inference server address and its connection (opaque here)."""

    __slots__ = ("address", "connection", "failures", "healthy", "in_flight", "requests", "since")

    def __init__(self, address: str, connection: Any) -> None:
        self.address = address
        self.connection = connection
        self.healthy = True
        self.since = time.monotonic()
        self.requests = 0
        self.failures = 0
        self.in_flight = 0

    def mark_down(self, why: str) -> None:
        if self.healthy:
            self.healthy = False
            self.since = time.monotonic()
            log.warning(
                "backend %s unhealthy: %s",
                self.address,
                why,
                extra={"fields": {"event": "backend_down", "backend": self.address}},
            )

    def mark_up(self) -> None:
        if not self.healthy:
            self.healthy = True
            self.since = time.monotonic()
            log.info(
                "backend %s healthy again",
                self.address,
                extra={"fields": {"event": "backend_up", "backend": self.address}},
            )

    def __repr__(self) -> str:
        return f"Backend({self.address!r}, healthy={self.healthy})"


class BackendPool:
    """The backends one variant may use. Picks the healthy backend with the fewest calls in
    flight (rotating among ties), which spreads load evenly and steers around a slow one."""

    __slots__ = ("_turn", "addresses", "backends")

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = tuple(backends)
        self.addresses = tuple(b.address for b in self.backends)
        self._turn = 0

    def pick(self, exclude: Backend | None = None) -> Backend | None:
        """A healthy backend (not `exclude`), or None when there is none."""
        backends = self.backends
        count = len(backends)
        if count == 1:
            only = backends[0]
            return only if only.healthy and only is not exclude else None
        self._turn = turn = (self._turn + 1) % count
        best: Backend | None = None
        for i in range(count):
            backend = backends[(turn + i) % count]
            if not backend.healthy or backend is exclude:
                continue
            if best is None or backend.in_flight < best.in_flight:
                best = backend
        return best

    def __len__(self) -> int:
        return len(self.backends)


def _addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Addresses stripped, without blanks and duplicates, in their order."""
    return tuple(dict.fromkeys(a.strip() for a in addresses if a.strip()))


class BackendRegistry:
    """Every backend the routing table uses, by address: one connection per address,
    reused by every pool and every request."""

    def __init__(
        self,
        connect: Connect,
        disconnect: Disconnect,
        default_addresses: Sequence[str],
    ) -> None:
        self._connect = connect
        self._disconnect = disconnect
        self._backends: dict[str, Backend] = {}
        self._pools: dict[tuple[str, ...], BackendPool] = {}
        self.default_pool = self._new_pool(_addresses(default_addresses))

    def backend(self, address: str) -> Backend:
        backend = self._backends.get(address)
        if backend is None:
            backend = self._backends[address] = Backend(address, self._connect(address))
        return backend

    def pool(self, addresses: Iterable[str]) -> BackendPool:
        """The pool of these addresses (the default pool when there are none). Pools are
        shared, so that their rotation survives routing-table rebuilds."""
        key = _addresses(addresses)
        if not key:
            return self.default_pool
        pool = self._pools.get(key)
        if pool is None:
            pool = self._new_pool(key)
        return pool

    def _new_pool(self, key: tuple[str, ...]) -> BackendPool:
        if not key:
            raise ValueError("the default backend list is empty: set at least one address")
        pool = self._pools[key] = BackendPool([self.backend(a) for a in key])
        return pool

    def backends(self) -> list[Backend]:
        return sorted(self._backends.values(), key=lambda b: b.address)

    async def retain(self, in_use: Iterable[BackendPool]) -> None:
        """Close the connections of backends no pool in `in_use` (nor the default pool)
        names any more. Called after a routing-table swap; calls still running on a closed
        connection finish first because the gRPC channel close is graceful."""
        pools = {self.default_pool, *in_use}
        keep = {b.address for pool in pools for b in pool.backends}
        self._pools = {key: pool for key, pool in self._pools.items() if pool in pools}
        gone = [b for address, b in self._backends.items() if address not in keep]
        for backend in gone:
            del self._backends[backend.address]
        for backend in gone:
            await self._disconnect(backend.connection)

    async def close(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        self._pools = {}
        for backend in backends:
            await self._disconnect(backend.connection)


class HealthChecker:
    """Probes every backend every `interval_s` seconds (all at once, each bounded by the
    probe's own timeout) and sets its health from the answer."""

    def __init__(self, registry: BackendRegistry, probe: Probe, interval_s: float) -> None:
        self._registry = registry
        self._probe = probe
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        backends = self._registry.backends()
        results = await asyncio.gather(*(self._probe(b) for b in backends), return_exceptions=True)
        for backend, result in zip(backends, results, strict=True):
            if result is True:
                backend.mark_up()
            else:
                why = f"health check failed: {result!r}" if result is not False else "not serving"
                backend.mark_down(why)

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # a bug here must not stop health checking for good
                log.exception("health check round failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
