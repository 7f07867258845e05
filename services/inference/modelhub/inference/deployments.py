"""Keeps this server in line with the registry's deployments, through its watch feed.

The watcher follows `ModelSource.watch` with the suite's one Watch follower
(`modelhub.common.watch`): from the last revision it saw, so a reconnect replays only what
it missed; a compacted revision (history no longer kept) or one past the registry's head
(its database restored from a backup) restarts from 0, whose snapshot then replaces the
known state. Alias and version changes invalidate cached resolutions and re-evaluate the
deployments that select by alias or latest.

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
from dataclasses import dataclass

from modelhub.common.contract import (
    EndpointSpec,
    EventType,
    ResourceKind,
    ShadowSpec,
    VariantSpec,
    WatchEvent,
)
from modelhub.common.errors import InvalidArgumentError, ModelHubError, NotFoundError
from modelhub.common.watch import WatchFollower
from modelhub.inference.audit import AuditPolicies, AuditPolicy
from modelhub.inference.endpoints import EndpointRoutes, RoutesTable
from modelhub.inference.repository import Key, ModelRepository
from modelhub.inference.source import DEFAULT_REFERENCE, DeploymentSpec, ModelSource
from modelhub.inference.spec import LoadOverrides

log = logging.getLogger("modelhub.inference.deployments")

_MODEL_KINDS = (ResourceKind.ALIAS, ResourceKind.MODEL_VERSION, ResourceKind.MODEL)


def audit_policy(endpoint: EndpointSpec) -> AuditPolicy | None:
    """An endpoint's audit policy (None when it records nothing)."""
    audit = endpoint.audit
    if audit is None or not audit.sample_rate > 0:
        return None
    return AuditPolicy(
        sample_rate=min(audit.sample_rate, 1.0), redact_inputs=frozenset(audit.redact_inputs)
    )


def endpoint_routes(endpoint: EndpointSpec) -> EndpointRoutes:
    """An endpoint's variant and shadow names and the versions the registry resolved
    their selectors to."""
    targets: list[VariantSpec | ShadowSpec] = [*endpoint.variants, *endpoint.shadows]
    return EndpointRoutes(
        names=frozenset(t.name for t in targets),
        versions=frozenset(
            (t.model, t.selector.resolved_version)
            for t in targets
            if t.selector.resolved_version > 0
        ),
    )


@dataclass(frozen=True, slots=True)
class _Deployment:
    spec: DeploymentSpec
    overrides: LoadOverrides


def _desired(spec: DeploymentSpec) -> _Deployment:
    try:
        overrides = LoadOverrides.of_deployment(spec)
    except InvalidArgumentError as exc:
        log.warning("%s: %s; using server defaults", spec.name, exc.message)
        overrides = LoadOverrides()
    return _Deployment(spec, overrides)


@dataclass(slots=True)
class _Plan:
    """What the deployments want, with their overrides and names per version; the primary
    version of each model, and the versions aliases select."""

    desired: dict[Key, tuple[LoadOverrides, set[str]]]
    primaries: dict[str, Key]
    aliases: dict[tuple[str, str], int]
    complete: bool = True


class DeploymentWatcher:
    """Follows deployments and applies them to a repository (see the module docstring).

    The feed is followed by the suite's one Watch follower (`modelhub.common.watch`),
    this watcher being its consumer."""

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
        self._follower = WatchFollower(
            source.watch,
            self,
            name="deployment watch",
            retry_initial_s=backoff_initial_s,
            retry_max_s=backoff_max_s,
        )
        self._backoff_initial = backoff_initial_s
        self._retry_max = retry_max_s
        self._retry_s = backoff_initial_s
        self._deployments: dict[str, _Deployment] = {}
        self._snapshot: dict[str, _Deployment] | None = None
        self._dirty = asyncio.Event()
        self._pinned: set[Key] = set()
        self._routed: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retry: asyncio.TimerHandle | None = None
        self.synced = asyncio.Event()  # the first snapshot is reconciled
        self.reconciles = 0  # completed reconcile passes (for tests and introspection)

    @property
    def revision(self) -> int:
        return self._follower.revision

    @property
    def deployments(self) -> dict[str, DeploymentSpec]:
        return {name: d.spec for name, d in self._deployments.items()}

    def start(self) -> None:
        self._follower.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reconcile_loop(), name="deployments-reconcile")]

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        await self._follower.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------- watching (WatchConsumer)

    def begin_snapshot(self) -> None:
        self._snapshot = {}
        for table in self._tables:
            table.begin_snapshot()

    def end_snapshot(self, revision: int) -> None:
        if self._snapshot is not None:
            self._deployments, self._snapshot = self._snapshot, None
        for table in self._tables:
            table.end_snapshot()
        self._dirty.set()

    def apply(self, event: WatchEvent, live: bool) -> None:
        if event.type is EventType.PROGRESS:
            return
        put = event.type is EventType.PUT
        if event.kind is ResourceKind.DEPLOYMENT:
            target = self._deployments if live else self._snapshot
            if target is None:
                return
            if put and event.deployment is not None:
                target[event.name] = _desired(event.deployment)
            elif not put:
                target.pop(event.name, None)
            if live:
                self._dirty.set()
        elif event.kind is ResourceKind.ENDPOINT:
            endpoint = event.endpoint if put else None
            if self._audit is not None:
                self._audit.put(event.name, audit_policy(endpoint) if endpoint else None)
            if self._routes is not None:
                self._routes.put(event.name, endpoint_routes(endpoint) if endpoint else None)
        elif event.kind in _MODEL_KINDS:
            self._repo.invalidate(event.model)
            if live and any(d.spec.model == event.model for d in self._deployments.values()):
                self._dirty.set()

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
        plan = await self._plan()
        # 1. Load (old versions stay pinned until the swap is done).
        ready = await self._load(plan)
        # 2. Routes move to versions that are ready; a failed one keeps the old route.
        self._route(plan, ready)
        # 3. Release what no deployment wants, unless a route still points at it.
        await self._release(plan)
        return plan.complete and len(ready) == len(plan.desired)

    async def _plan(self) -> _Plan:
        plan = _Plan({}, {}, {})
        for d in sorted(self._deployments.values(), key=lambda d: d.spec.name):
            spec = d.spec
            for position, selector in enumerate(spec.selectors):
                version = selector.version
                if version is None:
                    try:
                        info = await self._source.resolve(spec.model, selector.reference)
                    except ModelHubError as exc:
                        log.warning("deployment %s: %s", spec.name, exc.message)
                        plan.complete = False
                        continue
                    version = info.version
                key: Key = (spec.model, version)
                self._want(plan, key, d)
                if position == 0:
                    plan.primaries.setdefault(spec.model, key)
                if selector.alias:
                    plan.aliases[(spec.model, selector.alias)] = version
        return plan

    @staticmethod
    def _want(plan: _Plan, key: Key, deployment: _Deployment) -> None:
        overrides, names = plan.desired.setdefault(key, (deployment.overrides, set()))
        if overrides != deployment.overrides:
            first = sorted(names)[0]
            log.warning(
                "deployments %s and %s both keep %s/%s loaded with different settings; using %s's",
                first,
                deployment.spec.name,
                *key,
                first,
            )
        names.add(deployment.spec.name)

    async def _load(self, plan: _Plan) -> set[Key]:
        self._repo.set_pins(self._pin_map(plan.desired, keep=self._pinned))
        keys = list(plan.desired)
        results = await asyncio.gather(
            *(self._repo.load(k[0], str(k[1]), plan.desired[k][0]) for k in keys),
            return_exceptions=True,
        )
        ready: set[Key] = set()
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                message = result.message if isinstance(result, ModelHubError) else repr(result)
                log.warning("deployment version %s/%s failed to load: %s", *key, message)
            else:
                ready.add(key)
        return ready

    def _route(self, plan: _Plan, ready: set[Key]) -> None:
        routes: dict[tuple[str, str], int] = {}
        for model, key in plan.primaries.items():
            routes[(model, DEFAULT_REFERENCE)] = key[1]
        routes.update(plan.aliases)
        for route, version in routes.items():
            if (route[0], version) in ready:
                self._repo.set_route(route[0], route[1], version)
                self._routed[route] = version
        for route in [r for r in self._routed if r not in routes]:
            self._repo.set_route(route[0], route[1], None)
            del self._routed[route]

    async def _release(self, plan: _Plan) -> None:
        still_routed = {(model, version) for (model, _), version in self._routed.items()}
        keep = {k for k in self._pinned if k in still_routed}
        self._repo.set_pins(self._pin_map(plan.desired, keep=keep))
        retired = [k for k in self._pinned if k not in plan.desired and k not in still_routed]
        self._pinned = set(plan.desired) | keep
        for key in retired:
            with contextlib.suppress(NotFoundError):
                await self._repo.unload(key[0], key[1], cause="deployment")

    @staticmethod
    def _pin_map(
        desired: dict[Key, tuple[LoadOverrides, set[str]]], keep: set[Key]
    ) -> dict[Key, frozenset[str]]:
        pins = {key: frozenset(names) for key, (_, names) in desired.items()}
        for key in keep:
            pins.setdefault(key, frozenset({"(previous deployment)"}))
        return pins
