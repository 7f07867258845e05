"""Following the registry's Watch feed: the one resumable follower of the suite (router,
inference and monitor each hand it what to do with the events).

* Start: watch from revision 0. The registry streams its whole state as PUT events, then
  SYNCED: the consumer builds a fresh copy between `begin_snapshot` and `end_snapshot`
  and swaps it in at the end, so that readers never see half a state.
* Follow: every later event is applied live (`apply(event, live=True)`); the follower
  remembers the revision of each (PROGRESS heartbeats keep it fresh while idle).
* Disconnect (the stream fails or ends): watch again from the last revision seen, so only
  what was missed is replayed, after a capped exponential backoff with jitter (many
  replicas do not reconnect in step after a registry restart). The consumer's state
  keeps serving meanwhile.
* `RevisionCompactedError` (the registry no longer keeps history that old, or the
  revision is past its head because its database was restored from a backup): re-list
  from 0, exactly like a start.

The follower knows no transport: `open_stream(start_revision)` yields `WatchEvent`s and
raises domain errors (`modelhub.common.registry_client.RegistryConnection.watch` over
gRPC; any async iterator in tests and for sources without a registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from modelhub.common.contract import EventType, WatchEvent
from modelhub.common.errors import ModelHubError, RevisionCompactedError

log = logging.getLogger("modelhub.common.watch")

OpenStream = Callable[[int], AsyncIterator[WatchEvent]]


class WatchConsumer(Protocol):
    """What a service does with the feed."""

    def begin_snapshot(self) -> None:
        """A re-list starts (revision 0): the events up to `end_snapshot` are the whole
        state, applied with `live=False`."""

    def apply(self, event: WatchEvent, live: bool) -> None:
        """One PUT, DELETE or PROGRESS event (inside a snapshot: `live` is False)."""

    def end_snapshot(self, revision: int) -> None:
        """SYNCED: the snapshot is complete at `revision`; it replaces the state."""


class WatchFollower:
    """Follows `open_stream` for `consumer` (see the module docstring)."""

    def __init__(
        self,
        open_stream: OpenStream,
        consumer: WatchConsumer,
        *,
        name: str = "registry watch",
        retry_initial_s: float = 0.1,
        retry_max_s: float = 2.0,
    ) -> None:
        self._open = open_stream
        self._consumer = consumer
        self._name = name
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._task: asyncio.Task[None] | None = None
        self.revision = 0  # the last revision seen live (0: none; the next watch re-lists)
        self.synced = asyncio.Event()  # the first snapshot is complete
        self.in_snapshot = False
        self._seen_events = False
        self.reconnects = 0
        self.relists = 0

    def start(self) -> None:
        """Start following (inside the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Follow until cancelled."""
        delay = self._retry_initial
        while True:
            try:
                await self._follow_once()
                log.info(
                    "%s: the stream ended; reconnecting from revision %d",
                    self._name,
                    self.revision,
                    extra={"fields": {"event": "watch_retry", "revision": self.revision}},
                )
            except RevisionCompactedError as exc:
                log.warning(
                    "%s: cannot resume from revision %d (%s: %s): re-listing",
                    self._name,
                    self.revision,
                    exc.reason,
                    exc.message,
                    extra={"fields": {"event": "watch_relist", "reason": exc.reason}},
                )
                self.revision = 0
                self.relists += 1
                delay = self._retry_initial
                continue
            except ModelHubError as exc:
                self._retrying(exc.message, delay)
            except Exception as exc:  # a consumer's bug must not end the follower
                log.exception("%s: following failed", self._name)
                self._retrying(repr(exc), delay)
            if self._seen_events:
                delay = self._retry_initial
            self.reconnects += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._retry_max)

    def _retrying(self, why: str, delay: float) -> None:
        log.warning(
            "%s interrupted (%s); retrying from revision %d in about %.1fs",
            self._name,
            why,
            self.revision,
            delay,
            extra={"fields": {"event": "watch_retry", "revision": self.revision}},
        )

    async def _follow_once(self) -> None:
        self._seen_events = False
        self.in_snapshot = self.revision == 0
        if self.in_snapshot:
            self._consumer.begin_snapshot()
        async for event in self._open(self.revision):
            self._seen_events = True
            self._handle(event)

    def _handle(self, event: WatchEvent) -> None:
        if event.type is EventType.SYNCED:
            self.revision = max(self.revision, event.revision)
            if self.in_snapshot:
                self.in_snapshot = False
                self._consumer.end_snapshot(event.revision)
                self.synced.set()
                log.info(
                    "%s: synced at registry revision %d",
                    self._name,
                    event.revision,
                    extra={"fields": {"event": "watch_synced", "revision": event.revision}},
                )
            return
        if not self.in_snapshot:
            # Inside a snapshot, revisions are the resources' own: resuming from one could
            # skip others, so only SYNCED advances the position then.
            self.revision = max(self.revision, event.revision)
        elif event.type is EventType.PROGRESS:
            return
        self._consumer.apply(event, not self.in_snapshot)
