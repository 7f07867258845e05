"""Reads versions' data profiles from the registry, the default drift baselines, and keeps
them current.

A profile is read once (GetModelVersion, FULL view) and cached, and so is its absence; the
registry's Watch feed (versions and models), followed by the suite's one Watch follower,
says when a version changed or went, and the next read asks the registry again: a profile
updated in the registry is the baseline of the next drift report. Nothing is cached
before the feed is synced, and a re-list (start, compacted history) forgets everything.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from modelhub.common.contract import EventType, ResourceKind, WatchEvent
from modelhub.common.errors import ModelHubError, NotFoundError, UnavailableError
from modelhub.common.names import model_name
from modelhub.common.registry_client import RegistryConnection
from modelhub.common.settings import RegistryClientSettings, TlsSettings
from modelhub.common.watch import WatchFollower
from modelhub.monitor.convert import profile_from_proto
from modelhub.monitor.profile import DataProfile

log = logging.getLogger("modelhub.monitor.registry")

KINDS = (ResourceKind.MODEL, ResourceKind.MODEL_VERSION)
Key = tuple[str, int]  # (`models/{model}`, version)


class RegistryProfiles:
    """A `monitor.BaselineSource` backed by the registry (see the module docstring).

    Create it inside the running event loop (it owns a `grpc.aio` channel), then `start`
    following the registry."""

    def __init__(
        self,
        registry: RegistryClientSettings,
        *,
        tls: TlsSettings | None = None,
        max_cached: int = 256,
        retry_max_s: float = 2.0,
    ) -> None:
        self.address = registry.address
        self._registry = RegistryConnection(registry, tls=tls)
        self._max_cached = max_cached
        self._cache: OrderedDict[Key, DataProfile | None] = OrderedDict()
        # Bumped by every change the feed reports: a read that a change overtook is not
        # cached (it may hold the profile from before the change).
        self._epoch = 0
        self.follower = WatchFollower(
            self._registry.watch(KINDS),
            self,
            name="registry watch (baselines)",
            retry_max_s=retry_max_s,
        )
        self.reads = 0  # GetModelVersion calls made

    def start(self) -> None:
        self.follower.start()

    async def __call__(self, model: str, version: int) -> DataProfile | None:
        """The data profile of `model` (`models/{m}`) version `version`; None when the
        version or its profile is absent. UnavailableError when the registry cannot say."""
        key = (model, version)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        epoch = self._epoch
        profile = await self._read(model, version)
        if epoch == self._epoch and self.follower.synced.is_set():
            self._cache[key] = profile
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return profile

    async def _read(self, model: str, version: int) -> DataProfile | None:
        self.reads += 1
        name = f"{model}/versions/{version}"
        try:
            reply = await self._registry.get_version(name, full=True)
        except NotFoundError:
            return None
        except ModelHubError as exc:  # down, too slow, or refusing this monitor's token
            raise UnavailableError(
                f"cannot read the baseline of {model} version {version} from the registry at "
                f"{self.address}: {exc.message}",
                metadata={"registry": self.address},
            ) from exc
        if not reply.HasField("data_profile"):
            return None
        return profile_from_proto(reply.data_profile)

    async def close(self) -> None:
        await self.follower.close()
        await self._registry.close()

    # ------------------------------------------------------------ WatchConsumer

    def begin_snapshot(self) -> None:
        return None

    def apply(self, event: WatchEvent, live: bool) -> None:
        if not live or event.type is EventType.PROGRESS:
            return
        if event.kind is ResourceKind.MODEL_VERSION:
            self._forget(model_name(event.model), event.number)
        elif event.kind is ResourceKind.MODEL and event.type is EventType.DELETE:
            self._forget(model_name(event.model), None)

    def end_snapshot(self, revision: int) -> None:
        # Whatever changed while nobody was listening is in the snapshot, not in events.
        self._epoch += 1
        self._cache.clear()

    def _forget(self, model: str, version: int | None) -> None:
        self._epoch += 1
        stale = [k for k in self._cache if k[0] == model and version in (None, k[1])]
        for key in stale:
            del self._cache[key]
        if stale:
            log.info(
                "the registry changed %s: its data profile is read again",
                f"{model}/versions/{version}" if version else model,
            )
