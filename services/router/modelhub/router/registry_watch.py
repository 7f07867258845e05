"""Keeps the router's `RegistryState` current through the registry's Watch stream.

* Start: Watch from revision 0 streams the whole state (PUT events) into a fresh state,
  closed by SYNCED; only then does the router swap in a table built from it.
* Follow: every later change is applied and the table rebuilt (changes arriving together
  are coalesced into one rebuild, `rebuild_delay_s`), so that a policy change reaches the
  data path in milliseconds.
* Disconnect: watch again from the last revision seen (PROGRESS heartbeats keep it fresh
  while idle), with capped exponential backoff; the old table keeps serving meanwhile.
* OUT_OF_RANGE (the registry no longer keeps history that old, REVISION_COMPACTED; or the
  revision is past the registry's head because its database was restored from a backup,
  REVISION_AHEAD): re-list from 0 into a fresh state and swap it in at SYNCED, exactly like
  a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import grpc

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc as rpb_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.settings import TlsSettings
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.router import convert
from modelhub.router.table import RegistryState

log = logging.getLogger("modelhub.router.watch")

OnState = Callable[[RegistryState], None]

_KINDS = (rpb.MODEL, rpb.MODEL_VERSION, rpb.ALIAS, rpb.DEPLOYMENT, rpb.ENDPOINT)


def _reason(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a registry error ("" when it carries none)."""
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            with contextlib.suppress(Exception):
                info = error_info(value)
                return info.reason if info is not None else ""
    return ""


class RegistryWatch:
    """Follows the registry and calls `on_state` with the state whenever it changed (after
    the initial SYNCED, then after every coalesced burst of changes)."""

    def __init__(
        self,
        address: str,
        on_state: OnState,
        *,
        token: str = "",
        max_message_bytes: int = 64 << 20,
        tls: TlsSettings | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 2.0,
        rebuild_delay_s: float = 0.01,
    ) -> None:
        self.address = address
        self._on_state = on_state
        self._metadata = bearer(token)
        self._max_message_bytes = max_message_bytes
        self._tls = tls
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._rebuild_delay = rebuild_delay_s
        self.state: RegistryState | None = None  # None until the first SYNCED
        self.synced = asyncio.Event()
        self.reconnects = 0
        self.relists = 0
        self._relist = False
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: grpc.aio.Channel | None = None

    def start(self) -> None:
        """Start following (inside the running loop)."""
        if self._tasks:
            return
        self._channel = service_channel(self.address, self._max_message_bytes, self._tls)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow()), loop.create_task(self._rebuilder())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # -------------------------------------------------------------------- following

    async def _follow(self) -> None:
        assert self._channel is not None
        stub = rpb_grpc.RegistryServiceStub(self._channel)
        delay = self._retry_initial
        while True:
            try:
                if self.state is None or self._relist:
                    await self._list_and_follow(stub)
                else:
                    await self._resume(stub, self.state)
                # The registry ended the stream (it is shutting down): reconnect.
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                    reason = _reason(exc)
                    log.warning(
                        "registry cannot resume from revision %s (%s: %s): re-listing",
                        self.state.revision if self.state else 0,
                        reason,
                        exc.details(),
                        extra={"fields": {"event": "watch_relist", "reason": reason}},
                    )
                    self._relist = True
                    self.relists += 1
                    delay = self._retry_initial
                    continue
                log.warning(
                    "registry watch interrupted (%s: %s); retrying in %.1fs",
                    exc.code().name,
                    exc.details(),
                    delay,
                    extra={"fields": {"event": "watch_retry"}},
                )
            self.reconnects += 1
            # Jitter spreads the reconnects of many routers after a registry restart.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._retry_max)

    async def _list_and_follow(self, stub: rpb_grpc.RegistryServiceStub) -> None:
        fresh = RegistryState()
        stream: Any = stub.Watch(
            rpb.WatchRequest(start_revision=0, kinds=_KINDS), metadata=self._metadata
        )
        try:
            async for event in stream:
                if event.type == rpb.WatchEvent.SYNCED:
                    fresh.revision = event.revision
                    self.state = fresh
                    self._relist = False
                    self._publish(fresh)
                    self.synced.set()
                    log.info(
                        "routing table synced at registry revision %d",
                        event.revision,
                        extra={"fields": {"event": "watch_synced", "revision": event.revision}},
                    )
                    break
                convert.apply_event(fresh, event)
            else:
                return  # stream ended before SYNCED: start over
            await self._apply_stream(stream, fresh)
        finally:
            stream.cancel()

    async def _resume(self, stub: rpb_grpc.RegistryServiceStub, state: RegistryState) -> None:
        stream: Any = stub.Watch(
            rpb.WatchRequest(start_revision=state.revision, kinds=_KINDS),
            metadata=self._metadata,
        )
        try:
            await self._apply_stream(stream, state)
        finally:
            stream.cancel()

    async def _apply_stream(self, stream: Any, state: RegistryState) -> None:
        async for event in stream:
            if event.revision > state.revision:
                state.revision = event.revision
            if convert.apply_event(state, event):
                self._dirty.set()

    # ------------------------------------------------------------------- rebuilding

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
            if self.state is not None and not self._relist:
                self._publish(self.state)
