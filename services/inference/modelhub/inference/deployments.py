"""Keeps this server in line with the registry's deployments, through its watch feed.

The watcher follows `ModelSource.watch` from the last revision it saw, so a reconnect
replays only what it missed; a compacted revision (history no longer kept) or one past the
registry's head (its database restored from a backup) restarts from 0, whose snapshot then
replaces the known state. Alias and version changes invalidate
cached resolutions and re-evaluate the deployments that select by alias or latest.

Reconciling is ordered for zero downtime: first every desired version is loaded and warm
(old versions stay pinned meanwhile), then each model's default route moves to its
deployment's primary version, and only then are versions no deployment wants any more
unloaded — each after its in-flight requests drain. A version that fails to load keeps
the old route; failed loads are retried with backoff.

The same feed carries the endpoints: the watcher keeps their audit policies (the payload
audit log) in `AuditPolicies` and what they route to in a `RoutesTable`, when given them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from modelhub.common.errors import ModelHubError, NotFoundError, RevisionCompactedError
from modelhub.inference.audit import AuditPolicies
from modelhub.inference.endpoints import RoutesTable
from modelhub.inference.repository import Key, ModelRepository
from modelhub.inference.source import (
    DEFAULT_REFERENCE,
    DeploymentSpec,
    EventType,
    ModelSource,
    ResourceKind,
    SourceEvent,
)
from modelhub.inference.spec import LoadOverrides

log = logging.getLogger("modelhub.inference.deployments")


class DeploymentWatcher:
    """Follows deployments and applies them to a repository (see the module docstring)."""

    def __init__(
        self,
        source: ModelSource,
        repository: ModelRepository,
        *,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        retry_max_s: float = 60.0,
        audit: AuditPolicies | None = None,
        routes: RoutesTable | None = None,
    ) -> None:
        self._source = source
        self._repo = repository
        self._tables: list[AuditPolicies | RoutesTable] = [
            t for t in (audit, routes) if t is not None
        ]
        self._audit = audit
        self._routes = routes
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._retry_max = retry_max_s
        self._retry_s = backoff_initial_s
        self._deployments: dict[str, DeploymentSpec] = {}
        self._revision = 0
        self._dirty = asyncio.Event()
        self._pinned: set[Key] = set()
        self._routed: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retry: asyncio.TimerHandle | None = None
        self.synced = asyncio.Event()  # the first snapshot is reconciled
        self.reconciles = 0  # completed reconcile passes (for tests and introspection)

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def deployments(self) -> dict[str, DeploymentSpec]:
        return dict(self._deployments)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch_loop(), name="deployments-watch"),
            loop.create_task(self._reconcile_loop(), name="deployments-reconcile"),
        ]

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ watching

    async def _watch_loop(self) -> None:
        backoff = self._backoff_initial
        while True:
            snapshot: dict[str, DeploymentSpec] | None = {} if self._revision == 0 else None
            if snapshot is not None:
                for table in self._tables:
                    table.begin_snapshot()
            try:
                async for event in self._source.watch(self._revision):
                    backoff = self._backoff_initial
                    if self._apply(event, snapshot) and snapshot is not None:
                        snapshot = None  # SYNCED: the snapshot became the state
                log.info("watch stream ended; reconnecting from revision %d", self._revision)
            except RevisionCompactedError as exc:
                # History compacted, or the revision is past the registry's head (its
                # database was restored from a backup): either way only a re-list is right.
                log.warning(
                    "cannot resume from revision %d (%s): re-listing from 0",
                    self._revision,
                    exc.message,
                )
                self._revision = 0
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "watch failed (%s); retrying from revision %d in %.1fs",
                    exc,
                    self._revision,
                    backoff,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    def _apply(self, event: SourceEvent, snapshot: dict[str, DeploymentSpec] | None) -> bool:
        """Apply one event; True when it ended a snapshot."""
        if event.type is EventType.SYNCED:
            if snapshot is not None:
                self._deployments = snapshot
                for table in self._tables:
                    table.end_snapshot()
            self._revision = max(self._revision, event.revision)
            self._dirty.set()
            return True
        live = snapshot is None
        if live:
            # Inside a snapshot, revisions are the resources' own: resuming from one could
            # skip others, so only SYNCED (above) advances the position then.
            self._revision = max(self._revision, event.revision)
        if event.type is EventType.PROGRESS:
            return False
        if event.kind is ResourceKind.DEPLOYMENT:
            target = snapshot if snapshot is not None else self._deployments
            if event.type is EventType.PUT and event.deployment is not None:
                target[event.name] = event.deployment
            elif event.type is EventType.DELETE:
                target.pop(event.name, None)
            if live:
                self._dirty.set()
        elif event.kind is ResourceKind.ENDPOINT:
            put = event.type is EventType.PUT
            if self._audit is not None:
                self._audit.put(event.name, event.audit if put else None)
            if self._routes is not None:
                self._routes.put(event.name, event.routes if put else None)
        elif event.kind in (ResourceKind.ALIAS, ResourceKind.MODEL_VERSION, ResourceKind.MODEL):
            self._repo.invalidate(event.model)
            if live and any(d.model == event.model for d in self._deployments.values()):
                self._dirty.set()
        return False

    # ------------------------------------------------------------------ reconciling

    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                complete = await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling deployments failed")
                complete = False
            self.reconciles += 1
            self.synced.set()
            if complete:
                self._retry_s = self._backoff_initial
            else:
                self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._retry = asyncio.get_running_loop().call_later(self._retry_s, self._dirty.set)
        self._retry_s = min(self._retry_s * 2, self._retry_max)

    async def reconcile(self) -> bool:
        """Bring the repository to the deployments' desired state; False if some version
        could not be resolved or loaded (a retry is due)."""
        complete = True
        desired: dict[Key, tuple[LoadOverrides, set[str]]] = {}
        primaries: dict[str, Key] = {}
        aliases: dict[tuple[str, str], int] = {}
        for spec in sorted(self._deployments.values(), key=lambda d: d.name):
            for position, selector in enumerate(spec.selectors):
                version = selector.version
                if version is None:
                    try:
                        info = await self._source.resolve(spec.model, selector.reference)
                    except ModelHubError as exc:
                        log.warning("deployment %s: %s", spec.name, exc.message)
                        complete = False
                        continue
                    version = info.version
                key: Key = (spec.model, version)
                overrides, names = desired.setdefault(key, (spec.overrides, set()))
                if overrides != spec.overrides:
                    log.warning(
                        "deployments %s and %s both keep %s/%s loaded with different "
                        "settings; using %s's",
                        sorted(names)[0],
                        spec.name,
                        *key,
                        sorted(names)[0],
                    )
                names.add(spec.name)
                if position == 0:
                    primaries.setdefault(spec.model, key)
                if selector.alias:
                    aliases[(spec.model, selector.alias)] = version

        # 1. Load (old versions stay pinned until the swap is done).
        self._repo.set_pins(self._pin_map(desired, keep=self._pinned))
        keys = list(desired)
        results = await asyncio.gather(
            *(self._repo.load(k[0], str(k[1]), desired[k][0]) for k in keys),
            return_exceptions=True,
        )
        ready: set[Key] = set()
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                complete = False
                message = result.message if isinstance(result, ModelHubError) else repr(result)
                log.warning("deployment version %s/%s failed to load: %s", *key, message)
            else:
                ready.add(key)

        # 2. Routes move to versions that are ready; a failed one keeps the old route.
        routes: dict[tuple[str, str], int] = {}
        for model, key in primaries.items():
            routes[(model, DEFAULT_REFERENCE)] = key[1]
        routes.update(aliases)
        for route, version in routes.items():
            if (route[0], version) in ready:
                self._repo.set_route(route[0], route[1], version)
                self._routed[route] = version
        for route in [r for r in self._routed if r not in routes]:
            self._repo.set_route(route[0], route[1], None)
            del self._routed[route]

        # 3. Release what no deployment wants, unless a route still points at it.
        still_routed = {(model, version) for (model, _), version in self._routed.items()}
        keep = {k for k in self._pinned if k in still_routed}
        self._repo.set_pins(self._pin_map(desired, keep=keep))
        retired = [k for k in self._pinned if k not in desired and k not in still_routed]
        self._pinned = set(desired) | keep
        for key in retired:
            with contextlib.suppress(NotFoundError):
                await self._repo.unload(key[0], key[1], cause="deployment")
        return complete

    @staticmethod
    def _pin_map(
        desired: dict[Key, tuple[LoadOverrides, set[str]]], keep: set[Key]
    ) -> dict[Key, frozenset[str]]:
        pins = {key: frozenset(names) for key, (_, names) in desired.items()}
        for key in keep:
            pins.setdefault(key, frozenset({"(previous deployment)"}))
        return pins
