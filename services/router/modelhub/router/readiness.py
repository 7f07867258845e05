"""Switching a variant to a new version only once that version is ready on its backends.

When an alias moves (or a variant's selector changes), the registry's Watch tells the
router and the inference servers at the same time; the inference servers then download,
load and warm the new version. Routing to it at once would make the first requests wait
for the load. Instead the variant keeps its current version while the new one is probed
with `ModelReady` on the variant's backends, and switches when they say ready — or when
the timeout passes (a version no deployment keeps loaded is loaded on its first request,
so waiting longer would not help).

A variant seen for the first time routes to its version at once: there is nothing older
to keep serving. Only versions a deployment keeps loaded are waited for (the table asks the
gate only about those): any other version loads on its first request, whenever that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

log = logging.getLogger("modelhub.router.readiness")

# pool key, model, version
ReadyKey = tuple[Hashable, str, int]
Probe = Callable[[Any, str, int], Awaitable[bool]]


class ReadinessGate:
    """Decides, per endpoint variant, which version the routing table may use now."""

    def __init__(
        self,
        probe: Probe,
        on_change: Callable[[], None],
        timeout_s: float = 30.0,
        interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._on_change = on_change
        self.timeout_s = timeout_s
        self._interval = interval_s
        self._clock = clock
        self._ready: set[ReadyKey] = set()
        self._pending: dict[ReadyKey, asyncio.Task[None]] = {}
        # What the current routing table serves, per (endpoint, variant).
        self._active: dict[tuple[str, str], tuple[str, int]] = {}

    def choose(
        self, endpoint: str, variant: str, model: str, version: int, pool_key: Hashable, pool: Any
    ) -> tuple[str, int]:
        """The (model, version) the variant routes to now: the new one when it is ready,
        new to this router, or the gate is off; else the one it routes to already."""
        current = self._active.get((endpoint, variant))
        if self.timeout_s <= 0 or current is None or current == (model, version):
            return model, version
        key = (pool_key, model, version)
        if key in self._ready:
            return model, version
        if key not in self._pending:
            log.info(
                "%s variant %s: keeping %s version %d until version %d is ready",
                endpoint, variant, current[0], current[1], version,
            )  # fmt: skip
            self._pending[key] = asyncio.get_running_loop().create_task(self._wait(key, pool))
        return current

    def commit(self, active: dict[tuple[str, str], tuple[str, int]]) -> None:
        """Record what the routing table just installed serves."""
        self._active = dict(active)

    async def _wait(self, key: ReadyKey, pool: Any) -> None:
        _, model, version = key
        deadline = self._clock() + self.timeout_s
        ready = False
        try:
            while self._clock() < deadline:
                try:
                    if await self._probe(pool, model, version):
                        ready = True
                        break
                except Exception:  # a failing probe is "not ready yet", never a stuck gate
                    log.exception("readiness probe of %s version %d failed", model, version)
                await asyncio.sleep(self._interval)
        finally:
            self._pending.pop(key, None)
        if not ready:
            log.warning(
                "%s version %d not ready after %.0f s: routing to it anyway (it loads on "
                "its first request)",
                model, version, self.timeout_s,
            )  # fmt: skip
        self._ready.add(key)
        self._on_change()

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        for task in list(self._pending.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pending.clear()
