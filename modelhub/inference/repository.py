"""The model versions this server holds: loading, routing, LRU eviction, draining.

- A version is *served* once its sessions exist and are warm; requests only ever reach
  served versions. Loading a version that is already served with other settings builds a
  second copy and swaps it in when ready (zero downtime); the old copy drains.
- Unloading removes a version from routing at once, waits for its in-flight requests
  (queued or running) to finish, then closes its batcher and sessions.
- Served versions stay within a memory budget (artifact size × instances, an estimate):
  admitting a new one evicts the least recently used versions no deployment pins.
- Version references: "" is the model's default (a deployment's primary version, else
  the source's `champion`, else its latest), digits name a version, anything else is an
  alias. Resolutions are cached for `resolve_ttl_s` (misses too, so a flood of requests
  for an unknown model does not become a flood of registry calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Tracer

from modelhub.common.errors import (
    ModelHubError,
    ModelNotReadyError,
    NotFoundError,
    ResourceExhaustedError,
)
from modelhub.inference.batcher import AdaptiveBatcher
from modelhub.inference.cache import ArtifactCache
from modelhub.inference.cost_model import CostModel, request_cpu_load
from modelhub.inference.metrics import InferenceMetrics, VersionTelemetry
from modelhub.inference.runtime import OrtInstance, SessionFactory, warm_up
from modelhub.inference.signature import ModelSignature, schema_from_session
from modelhub.inference.source import DEFAULT_REFERENCE, ModelSource
from modelhub.inference.spec import (
    BatchingPolicy,
    LoadOptions,
    LoadOverrides,
    ModelSchema,
    VersionInfo,
    VersionKey,
)

log = logging.getLogger("modelhub.inference.repository")

Key = tuple[str, int]


class VersionState(enum.Enum):
    UNAVAILABLE = "unavailable"  # known (e.g. deployed) but not loaded
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


class ServedVersion:
    """A loaded version: its sessions, batcher, signature and telemetry."""

    def __init__(
        self,
        info: VersionInfo,
        options: LoadOptions,
        signature: ModelSignature,
        instances: Sequence[OrtInstance],
        batcher: AdaptiveBatcher,
        telemetry: VersionTelemetry,
        memory_bytes: int,
    ) -> None:
        self.info = info
        self.key: Key = (info.model, info.version)
        self.options = options
        self.signature = signature
        self.instances = tuple(instances)
        self.batcher = batcher
        self.telemetry = telemetry
        self.memory_bytes = memory_bytes
        self.provider = instances[0].provider if instances else ""
        self.state = VersionState.READY
        self.inflight = 0
        self.loaded_monotonic = time.monotonic()
        self.loaded_wall = time.time()
        self.last_used = self.loaded_monotonic
        self._drained: asyncio.Event | None = None

    def enter(self) -> None:
        """Count a request in (call right after lookup, with no await in between)."""
        self.inflight += 1
        self.last_used = time.monotonic()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._drained is not None:
            self._drained.set()

    async def drain(self) -> None:
        """Wait until no request is in flight."""
        if self.inflight > 0:
            self._drained = asyncio.Event()
            await self._drained.wait()

    @property
    def last_used_wall(self) -> float:
        """Wall-clock time of the last request (requests only touch the monotonic clock)."""
        return self.loaded_wall + (self.last_used - self.loaded_monotonic)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index."""

    model: str
    version: int
    state: VersionState
    reason: str = ""
    provider: str = ""
    instance_count: int = 0
    memory_bytes: int = 0
    pinned: bool = False
    last_used: float = 0.0  # wall clock seconds; 0 if never
    batching: BatchingPolicy | None = None


class ModelRepository:
    """Loads, routes, evicts and unloads model versions (see the module docstring)."""

    def __init__(
        self,
        source: ModelSource,
        cache: ArtifactCache,
        factory: SessionFactory,
        metrics: InferenceMetrics,
        *,
        defaults: LoadOptions,
        memory_budget_bytes: int,
        load_on_demand: bool = True,
        resolve_ttl_s: float = 5.0,
        warmup: bool = True,
        inline_threshold_s: float = 0.0,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.defaults = defaults
        self.load_on_demand = load_on_demand
        self._cache = cache
        self._factory = factory
        self._metrics = metrics
        self._budget = memory_budget_bytes
        self._ttl = resolve_ttl_s
        self._warmup = warmup
        self._inline_threshold = inline_threshold_s
        self._tracer = tracer
        self._clock = clock
        self._served: dict[Key, ServedVersion] = {}
        self._retiring: set[ServedVersion] = set()
        self._loads: dict[Key, asyncio.Task[ServedVersion]] = {}
        self._status: dict[Key, tuple[VersionState, str]] = {}
        self._pins: dict[Key, frozenset[str]] = {}
        self._routes: dict[tuple[str, str], int] = {}  # set by deployments
        self._resolved: dict[tuple[str, str], tuple[VersionInfo, float]] = {}
        self._missing: dict[tuple[str, str], tuple[NotFoundError, float]] = {}
        self._memory = 0
        self._admission = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ routing

    def lookup(self, model: str, reference: str) -> ServedVersion | None:
        """The served version a reference names, from what is known now (no I/O)."""
        if reference.isdigit():
            return self._served.get((model, int(reference)))
        version = self._routes.get((model, reference))
        if version is None:
            hit = self._resolved.get((model, reference))
            if hit is None or hit[1] <= self._clock():
                return None
            version = hit[0].version
        return self._served.get((model, version))

    async def acquire(self, model: str, reference: str) -> ServedVersion:
        """The served version a reference names, resolving and (when allowed) loading it.

        The caller must `enter()` the result before its next await."""
        for _ in range(3):  # a version evicted right after loading is retried, not looped on
            served = self.lookup(model, reference)
            if served is not None:
                return served
            info = await self.resolve(model, reference)
            served = self._served.get((model, info.version))
            if served is None:
                if not self.load_on_demand:
                    raise self._not_loaded(model, str(info.version))
                served = await self.load(model, str(info.version), any_options=True)
            if self._served.get(served.key) is served:
                return served
        raise ModelNotReadyError(
            f"model {model!r} version {reference or '(default)'!r} was unloaded while "
            "loading; retry",
            metadata={"model": model, "version": reference},
        )

    def _not_loaded(self, model: str, reference: str) -> ModelHubError:
        if any(key[0] == model for key in (*self._served, *self._status, *self._loads)):
            return ModelNotReadyError(
                f"model {model!r} version {reference or '(default)'!r} is not loaded on "
                "this server (loading on demand is off)",
                metadata={"model": model, "version": reference},
            )
        return NotFoundError(f"model {model!r} is not served here", metadata={"model": model})

    async def resolve(self, model: str, reference: str) -> VersionInfo:
        """A version's description, from the deployment routes or the source (cached)."""
        routed = self._routes.get((model, reference))
        if routed is not None:
            reference = str(routed)
        if not self.load_on_demand and reference == DEFAULT_REFERENCE:
            versions = [v for (m, v) in self._served if m == model]
            if not versions:
                raise self._not_loaded(model, reference)
            reference = str(max(versions))
        if reference.isdigit():
            served = self._served.get((model, int(reference)))
            if served is not None:
                return served.info
        now = self._clock()
        cache_key = (model, reference)
        missing = self._missing.get(cache_key)
        if missing is not None and missing[1] > now:
            raise NotFoundError(missing[0].message, metadata=missing[0].metadata)
        hit = self._resolved.get(cache_key)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            info = await self.source.resolve(model, reference)
        except NotFoundError as exc:
            self._remember(self._missing, cache_key, (exc, now + self._ttl), now)
            raise
        self._remember(self._resolved, cache_key, (info, now + self._ttl), now)
        self._remember(self._resolved, (model, str(info.version)), (info, now + self._ttl), now)
        return info

    _CACHE_LIMIT = 4096

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any, now: float) -> None:
        """Cache a resolution, keeping the cache bounded: requests can name anything."""
        if len(cache) >= self._CACHE_LIMIT:
            for stale in [k for k, v in cache.items() if v[1] <= now]:
                del cache[stale]
            if len(cache) >= self._CACHE_LIMIT:
                cache.clear()
        cache[key] = value

    def invalidate(self, model: str) -> None:
        """Forget cached resolutions of `model` (its aliases or versions changed)."""
        for cache in (self._resolved, self._missing):
            for key in [k for k in cache if k[0] == model]:
                del cache[key]

    def set_route(self, model: str, reference: str, version: int | None) -> None:
        """Pin a reference ("" or an alias) of `model` to a version (deployments do this
        once the version is served), or release it (None)."""
        if version is None:
            self._routes.pop((model, reference), None)
        else:
            self._routes[(model, reference)] = version

    def routes(self) -> dict[tuple[str, str], int]:
        return dict(self._routes)

    def set_pins(self, pins: dict[Key, frozenset[str]]) -> None:
        """Which versions deployments keep loaded (exempt from eviction)."""
        self._pins = {k: v for k, v in pins.items() if v}
        for key in self._pins:
            if key not in self._served and key not in self._loads:
                self._status.setdefault(key, (VersionState.UNAVAILABLE, "deployed"))
        for key, (state, _) in list(self._status.items()):
            if state is VersionState.UNAVAILABLE and key not in self._pins:
                del self._status[key]

    def served(self, model: str | None = None) -> list[ServedVersion]:
        return [s for k, s in self._served.items() if model is None or k[0] == model]

    def is_pinned(self, key: Key) -> bool:
        return bool(self._pins.get(key))

    # ------------------------------------------------------------------ loading

    def options_for(self, overrides: LoadOverrides | None) -> LoadOptions:
        return (overrides or LoadOverrides()).apply(self.defaults)

    async def load(
        self,
        model: str,
        reference: str,
        overrides: LoadOverrides | None = None,
        *,
        any_options: bool = False,
    ) -> ServedVersion:
        """Serve a version (with `overrides` on the server defaults) and wait until it is
        ready. Already served with the same settings — or with any, if `any_options` —:
        returned as is. Served with other settings: a new copy replaces it once warm."""
        if self._closed:
            raise ModelNotReadyError("the server is shutting down")
        info = await self.resolve(model, reference)
        options = self.options_for(overrides)
        key: Key = (model, info.version)
        while True:
            pending = self._loads.get(key)
            if pending is not None:
                served = await asyncio.shield(pending)
                if any_options or served.options == options:
                    return served
                continue
            current = self._served.get(key)
            if current is not None and (any_options or current.options == options):
                return current
            task = asyncio.get_running_loop().create_task(self._load(info, options))
            self._loads[key] = task
            task.add_done_callback(lambda t, k=key: self._loads.pop(k, None))  # type: ignore[misc]
            return await asyncio.shield(task)

    async def _load(self, info: VersionInfo, options: LoadOptions) -> ServedVersion:
        key: Key = (info.model, info.version)
        name = str(VersionKey(*key))
        instances = max(1, options.runtime.instance_count)
        memory = max(1, info.size_bytes) * instances
        self._status[key] = (VersionState.LOADING, "")
        started = time.perf_counter()
        try:
            await self._admit(memory, key)
        except ModelHubError as exc:
            self._status[key] = (VersionState.FAILED, exc.message)
            self._metrics.loads.labels(info.model, "failed").inc()
            raise
        try:
            served = await self._build(info, options, memory, name)
        except BaseException as exc:
            self._memory -= memory
            self._metrics.memory_bytes.set(self._memory)
            reason = exc.message if isinstance(exc, ModelHubError) else repr(exc)
            self._status[key] = (VersionState.FAILED, reason)
            self._metrics.loads.labels(info.model, "failed").inc()
            log.warning("loading %s failed: %s", name, reason)
            raise
        previous = self._served.get(key)
        self._served[key] = served
        self._status.pop(key, None)
        self._metrics.loads.labels(info.model, "ready").inc()
        self._metrics.loaded_versions.set(len(self._served))
        log.info(
            "model version %s ready on %s in %.2fs",
            name,
            served.provider,
            time.perf_counter() - started,
            extra={
                "fields": {
                    "event": "model_ready",
                    "model": info.model,
                    "version": info.version,
                    "provider": served.provider,
                }
            },
        )
        if previous is not None:
            self._spawn(self._retire(previous, "replaced"))
        return served

    async def _build(
        self, info: VersionInfo, options: LoadOptions, memory: int, name: str
    ) -> ServedVersion:
        path = await self._cache.get(info)
        instances = await asyncio.to_thread(self._factory.create, path, options.runtime, name)
        try:
            first = instances[0].session
            schema = schema_from_session(first.get_inputs(), first.get_outputs())
            signature = ModelSignature(schema, options.batching.max_batch_size)
            cost = CostModel(signature.max_rows, cpu=request_cpu_load())
            if self._warmup:
                sizes = sorted({1, signature.max_rows})
                for instance in instances:
                    for rows, seconds in await asyncio.to_thread(
                        warm_up, instance, signature, sizes
                    ):
                        cost.curve.observe(rows, seconds)
            telemetry = self._metrics.for_version(info.model, str(info.version))
            batcher = AdaptiveBatcher(
                name=name,
                input_names=signature.input_names,
                instances=instances,
                policy=options.batching,
                batchable=signature.batchable,
                cost=cost,
                observer=telemetry,
                tracer=self._tracer,
                inline_threshold_s=self._inline_threshold,
                span_attributes={"modelhub.model": info.model, "modelhub.version": info.version},
            )
            batcher.start()
        except BaseException:
            for instance in instances:
                instance.close()
            raise
        return ServedVersion(info, options, signature, instances, batcher, telemetry, memory)

    async def _admit(self, memory: int, key: Key) -> None:
        """Reserve `memory` in the budget, evicting least recently used unpinned versions."""
        if memory > self._budget:
            raise ResourceExhaustedError(
                f"model version {VersionKey(*key)} needs about {memory} bytes; the memory "
                f"budget is {self._budget}",
                reason="MEMORY_BUDGET",
            )
        async with self._admission:
            while self._memory + memory > self._budget:
                victims = [
                    s
                    for k, s in self._served.items()
                    if k != key and not self._pins.get(k) and s.state is VersionState.READY
                ]
                if not victims:
                    raise ResourceExhaustedError(
                        f"no memory for model version {VersionKey(*key)} ({memory} bytes): "
                        f"{self._memory} of {self._budget} bytes are held by versions that "
                        "deployments keep loaded or that are still loading",
                        reason="MEMORY_BUDGET",
                    )
                victim = min(victims, key=lambda s: s.last_used)
                log.info("evicting %s (least recently used) for %s", victim.key, key)
                del self._served[victim.key]
                await self._retire(victim, "evicted")
            self._memory += memory
            self._metrics.memory_bytes.set(self._memory)

    # ------------------------------------------------------------------ unloading

    async def unload(self, model: str, version: int, cause: str = "unload") -> None:
        """Stop routing to a version, wait for its in-flight requests, release it."""
        key: Key = (model, version)
        pending = self._loads.get(key)
        if pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        served = self._served.pop(key, None)
        if served is None:
            if self._status.pop(key, None) is not None:
                return
            raise NotFoundError(
                f"model {model!r} version {version} is not loaded",
                metadata={"model": model, "version": str(version)},
            )
        await self._retire(served, cause)

    async def _retire(self, served: ServedVersion, cause: str) -> None:
        served.state = VersionState.UNLOADING
        self._retiring.add(served)
        self._metrics.loaded_versions.set(len(self._served))
        try:
            await served.drain()
            await served.batcher.close()
            for instance in served.instances:
                instance.close()
        finally:
            self._retiring.discard(served)
            self._memory -= served.memory_bytes
            self._metrics.memory_bytes.set(self._memory)
            self._metrics.unloads.labels(served.info.model, cause).inc()
            served.telemetry.queue_depth(0)
            if served.key in self._pins and served.key not in self._served:
                self._status.setdefault(served.key, (VersionState.UNAVAILABLE, cause))
        log.info("model version %s/%s unloaded (%s)", *served.key, cause)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Unload everything (after the server stopped taking requests)."""
        self._closed = True
        for task in list(self._loads.values()):
            task.cancel()
        await asyncio.gather(*self._loads.values(), return_exceptions=True)
        served = list(self._served.values())
        self._served.clear()
        await asyncio.gather(*(self._retire(s, "shutdown") for s in served))
        await asyncio.gather(*self._background, return_exceptions=True)

    # ------------------------------------------------------------------ introspection

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries: dict[Key, IndexEntry] = {}
        for key, (state, reason) in self._status.items():
            entries[key] = IndexEntry(key[0], key[1], state, reason, pinned=self.is_pinned(key))
        for served in (*self._retiring, *self._served.values()):
            entries[served.key] = IndexEntry(
                served.key[0],
                served.key[1],
                served.state,
                "",
                served.provider,
                len(served.instances),
                served.memory_bytes,
                self.is_pinned(served.key),
                served.last_used_wall,
                served.options.batching,
            )
        rows = sorted(entries.values(), key=lambda e: (e.model, e.version))
        if ready_only:
            rows = [e for e in rows if e.state is VersionState.READY]
        return rows

    async def schema(self, model: str, reference: str) -> tuple[VersionInfo, ModelSchema | None]:
        """A version's description and schema, without loading it."""
        served = self.lookup(model, reference)
        if served is not None:
            return served.info, served.signature.schema
        info = await self.resolve(model, reference)
        served = self._served.get((model, info.version))
        return info, served.signature.schema if served is not None else info.schema

    def known_versions(self, model: str) -> list[int]:
        keys = {*self._served, *self._status, *self._loads}
        return sorted(v for (m, v) in keys if m == model)

    @property
    def memory_used(self) -> int:
        return self._memory

    @property
    def cache(self) -> ArtifactCache:
        return self._cache
