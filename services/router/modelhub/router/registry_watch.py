"""Keeps the router's `RegistryState` current through the registry's Watch stream, with the
suite's one follower (`modelhub.common.watch`: resume from the last revision, backoff,
re-list on OUT_OF_RANGE).

* Start, and every re-list: the snapshot goes into a fresh state, swapped in at SYNCED;
  only then does the router build a table from it. The old table keeps serving meanwhile.
* Follow: every later change is applied and the table rebuilt (changes arriving together
  are coalesced into one rebuild, `rebuild_delay_s`), so that a policy change reaches the
  data path in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from modelhub.common.contract import EventType, ResourceKind, WatchEvent
from modelhub.common.registry_client import RegistryConnection
from modelhub.common.settings import RegistryClientSettings, TlsSettings
from modelhub.common.watch import WatchFollower
from modelhub.router.table import RegistryState

log = logging.getLogger("modelhub.router.watch")

OnState = Callable[[RegistryState], None]

KINDS = (
    ResourceKind.MODEL,
    ResourceKind.MODEL_VERSION,
    ResourceKind.ALIAS,
    ResourceKind.DEPLOYMENT,
    ResourceKind.ENDPOINT,
)


class RegistryWatch:
    """Follows the registry and calls `on_state` with the state whenever it changed (after
    each SYNCED, then after every coalesced burst of changes)."""

    def __init__(
        self,
        registry: RegistryClientSettings,
        on_state: OnState,
        *,
        max_message_bytes: int = 64 << 20,
        tls: TlsSettings | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 2.0,
        rebuild_delay_s: float = 0.01,
    ) -> None:
        self.address = registry.address
        self._registry = registry
        self._on_state = on_state
        self._max_message_bytes = max_message_bytes
        self._tls = tls
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._rebuild_delay = rebuild_delay_s
        self.state: RegistryState | None = None  # None until the first SYNCED
        self._fresh: RegistryState | None = None  # the snapshot being listed
        self.synced = asyncio.Event()  # the first snapshot is in
        self._dirty = asyncio.Event()
        self._connection: RegistryConnection | None = None
        self._follower: WatchFollower | None = None
        self._rebuild: asyncio.Task[None] | None = None

    @property
    def reconnects(self) -> int:
        return self._follower.reconnects if self._follower is not None else 0

    @property
    def relists(self) -> int:
        return self._follower.relists if self._follower is not None else 0

    def start(self) -> None:
        """Start following (inside the running loop)."""
        if self._follower is not None:
            return
        self._connection = RegistryConnection(
            self._registry, tls=self._tls, max_message_bytes=self._max_message_bytes
        )
        self._follower = WatchFollower(
            self._connection.watch(KINDS),
            self,
            name="registry watch (routing)",
            retry_initial_s=self._retry_initial,
            retry_max_s=self._retry_max,
        )
        self._follower.start()
        self._rebuild = asyncio.get_running_loop().create_task(self._rebuilder())

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.close()
        if self._rebuild is not None:
            self._rebuild.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuild
            self._rebuild = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # ------------------------------------------------------------ WatchConsumer

    def begin_snapshot(self) -> None:
        self._fresh = RegistryState()

    def apply(self, event: WatchEvent, live: bool) -> None:
        if not live:
            if self._fresh is not None:
                self._fresh.apply(event)
            return
        state = self.state
        if state is None:
            return
        state.revision = max(state.revision, event.revision)
        if event.type is not EventType.PROGRESS and state.apply(event):
            self._dirty.set()

    def end_snapshot(self, revision: int) -> None:
        fresh, self._fresh = self._fresh or RegistryState(), None
        fresh.revision = revision
        self.state = fresh
        self._publish(fresh)
        self.synced.set()

    # -------------------------------------------------------------- rebuilding

    def _publish(self, state: RegistryState) -> None:
        started = time.perf_counter()
        try:
            self._on_state(state)
        except Exception:  # keep following; the next change rebuilds again
            log.exception("building the routing table failed")
            return
        log.debug("routing table rebuilt in %.2f ms", (time.perf_counter() - started) * 1e3)

    async def _rebuilder(self) -> None:
        while True:
            await self._dirty.wait()
            # Let the rest of a burst (a replay, an endpoint and its alias) arrive first.
            await asyncio.sleep(self._rebuild_delay)
            self._dirty.clear()
            follower = self._follower
            if self.state is not None and follower is not None and not follower.in_snapshot:
                self._publish(self.state)
