"""The model versions this server holds: loading, routing, LRU eviction, draining.

- A version is *served* once its sessions exist and are warm; requests only ever reach
  served versions. Loading a version that is already served with other settings builds a
  second copy and swaps it in when ready (zero downtime); the old copy drains.
- Unloading removes a version from routing at once, waits for its in-flight requests
  (queued or running) to finish, then closes its batcher and sessions.
- Served versions stay within a memory budget, counted from what their sessions really
  take (`memory.MemoryMeter`: the C heap bytes that building and warming up the sessions
  left in use, never less than artifact size × instances). A load is admitted on an estimate (the
  figure measured the last time this artifact loaded with these settings, else artifact
  size × instances × `memory_estimate_factor`), then re-checked with the measured figure;
  either step evicts the least recently used versions no deployment pins, or refuses with
  RESOURCE_EXHAUSTED leaving nothing loaded. Unloading closes the sessions and returns the
  freed memory to the kernel.
- Loading on demand (a request naming a version that is not loaded) happens only with
  `load_on_demand`, and only for callers that may load (`may_load`: the servicers pass
  whether the caller has the role LoadModel needs) unless a deployment names the version.
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
    PermissionDeniedError,
    ResourceExhaustedError,
)
from modelhub.common.names import is_decimal
from modelhub.inference.batcher import AdaptiveBatcher
from modelhub.inference.cache import ArtifactCache
from modelhub.inference.cost_model import CostModel, request_cpu_load
from modelhub.inference.memory import MemoryMeter
from modelhub.inference.metrics import InferenceMetrics, VersionTelemetry
from modelhub.inference.runtime import OrtInstance, SessionFactory, warm_up
from modelhub.inference.signature import ModelSignature, schema_from_session
from modelhub.inference.source import DEFAULT_REFERENCE, ModelSource
from modelhub.inference.spec import (
    BatchingPolicy,
    LoadOptions,
    LoadOverrides,
    ModelSchema,
    RuntimeOptions,
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
        # What the budget counts for this version: the memory measured while its
        # sessions were built and warmed up, at least artifact size × instances.
        self.memory_bytes = memory_bytes
        self.measured_bytes = 0  # the measurement itself (0: none was possible)
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


def _measure_key(info: VersionInfo, options: LoadOptions) -> tuple[str, RuntimeOptions, int]:
    return (info.sha256, options.runtime, options.batching.max_batch_size)


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
        memory_estimate_factor: float = 1.25,
        load_on_demand: bool = True,
        resolve_ttl_s: float = 5.0,
        warmup: bool = True,
        inline_threshold_s: float = 0.0,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        routed: Callable[[Key], bool] | None = None,
    ) -> None:
        """`routed`: whether an endpoint routes to a version (such a version loads on
        demand for any caller, like a deployed one)."""
        self.source = source
        self._routed = routed or (lambda key: False)
        self.defaults = defaults
        self.load_on_demand = load_on_demand
        self._cache = cache
        self._factory = factory
        self._metrics = metrics
        self._budget = memory_budget_bytes
        self._estimate_factor = memory_estimate_factor
        # Builds, measures and releases sessions, one version at a time, on its thread.
        self._meter = MemoryMeter()
        # What each artifact took when it last loaded with given runtime settings and
        # batch size (the warm-up's, which the arena keeps): its next load's estimate.
        self._measured: dict[tuple[str, RuntimeOptions, int], int] = {}
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
        metrics.memory_budget_bytes.set(memory_budget_bytes)
        self._admission = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ routing

    def lookup(self, model: str, reference: str) -> ServedVersion | None:
        """The served version a reference names, from what is known now (no I/O)."""
        if is_decimal(reference):
            return self._served.get((model, int(reference)))
        version = self._routes.get((model, reference))
        if version is None:
            hit = self._resolved.get((model, reference))
            if hit is None or hit[1] <= self._clock():
                return None
            version = hit[0].version
        return self._served.get((model, version))

    async def acquire(self, model: str, reference: str, *, may_load: bool = True) -> ServedVersion:
        """The served version a reference names, resolving and (when allowed) loading it.

        A version that is not loaded loads on demand when `load_on_demand` is on and either
        the caller `may_load`, a deployment names the version (it is pinned, or already
        loading: joining that load starts nothing) or an endpoint routes to it. The caller
        must `enter()` the result before its next await."""
        for _ in range(3):  # a version evicted right after loading is retried, not looped on
            served = self.lookup(model, reference)
            if served is not None:
                return served
            info = await self.resolve(model, reference)
            key: Key = (model, info.version)
            served = self._served.get(key)
            if served is None:
                if not self.load_on_demand:
                    raise self._not_loaded(model, str(info.version))
                if not (may_load or self.is_pinned(key) or key in self._loads or self._routed(key)):
                    raise PermissionDeniedError(
                        f"model {model!r} version {info.version} is not loaded on this "
                        "server, and loading a version on demand needs the role that "
                        "LoadModel needs: ask an operator to deploy it (or to load it "
                        "with LoadModel), or call with credentials that may load models",
                        reason="LOAD_NOT_PERMITTED",
                        metadata={"model": model, "version": str(info.version)},
                    )
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
        if is_decimal(reference):
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

    def estimate(self, info: VersionInfo, options: LoadOptions) -> int:
        """The memory a load of `info` with `options` is admitted on: what it took the last
        time it loaded here so, else artifact size × instances × the factor."""
        measured = self._measured.get(_measure_key(info, options))
        if measured is not None:
            return measured
        size = max(1, info.size_bytes) * max(1, options.runtime.instance_count)
        return max(size, int(size * self._estimate_factor))

    async def _load(self, info: VersionInfo, options: LoadOptions) -> ServedVersion:
        key: Key = (info.model, info.version)
        name = str(VersionKey(*key))
        estimate = self.estimate(info, options)
        self._status[key] = (VersionState.LOADING, "")
        started = time.perf_counter()
        try:
            await self._admit(estimate, key)
        except ModelHubError as exc:
            self._status[key] = (VersionState.FAILED, exc.message)
            self._metrics.loads.labels(info.model, "failed").inc()
            raise
        reserved = estimate
        try:
            served = await self._build(info, options, name)
            # From here the budget counts the measured figure (refused: released again).
            self._memory += served.memory_bytes - reserved
            reserved = served.memory_bytes
            await self._settle(served)
        except BaseException as exc:
            self._memory -= reserved
            self._metrics.memory_bytes.set(self._memory)
            reason = exc.message if isinstance(exc, ModelHubError) else repr(exc)
            self._status[key] = (VersionState.FAILED, reason)
            self._metrics.loads.labels(info.model, "failed").inc()
            log.warning("loading %s failed: %s", name, reason)
            raise
        previous = self._served.get(key)
        self._served[key] = served
        self._status.pop(key, None)
        self._publish_memory(key)
        self._metrics.loads.labels(info.model, "ready").inc()
        self._metrics.loaded_versions.set(len(self._served))
        log.info(
            "model version %s ready on %s in %.2fs, holding %d bytes (measured %d)",
            name,
            served.provider,
            time.perf_counter() - started,
            served.memory_bytes,
            served.measured_bytes,
            extra={
                "fields": {
                    "event": "model_ready",
                    "model": info.model,
                    "version": info.version,
                    "provider": served.provider,
                    "memory_bytes": served.memory_bytes,
                    "measured_bytes": served.measured_bytes,
                }
            },
        )
        if previous is not None:
            self._spawn(self._retire(previous, "replaced"))
        return served

    async def _build(self, info: VersionInfo, options: LoadOptions, name: str) -> ServedVersion:
        """Build, warm up and measure the sessions of a version, then its batcher."""
        path = await self._cache.get(info)
        runtime = options.runtime
        max_batch_size = options.batching.max_batch_size
        warmup = self._warmup

        def sessions() -> tuple[list[OrtInstance], ModelSignature, CostModel]:
            instances = self._factory.create(path, runtime, name)
            try:
                schema = schema_from_session(
                    instances[0].session.get_inputs(), instances[0].session.get_outputs()
                )
                signature = ModelSignature(schema, max_batch_size)
                cost = CostModel(signature.max_rows, cpu=request_cpu_load())
                if warmup:  # also grows the arena to what a full batch needs: measured too
                    sizes = sorted({1, signature.max_rows})
                    for instance in instances:
                        for rows, seconds in warm_up(instance, signature, sizes):
                            cost.curve.observe(rows, seconds)
            except BaseException:
                for instance in instances:
                    instance.close()
                raise
            return instances, signature, cost

        await asyncio.to_thread(self._factory.initialize, runtime.device)
        (instances, signature, cost), measured = await self._meter.measure(sessions)
        floor = max(1, info.size_bytes) * len(instances)
        memory = max(measured, floor)
        self._remember_measured(_measure_key(info, options), memory)
        try:
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
            await self._release_instances(instances)
            raise
        served = ServedVersion(info, options, signature, instances, batcher, telemetry, memory)
        served.measured_bytes = measured
        return served

    _MEASURED_LIMIT = 1024

    def _remember_measured(self, key: tuple[str, RuntimeOptions, int], memory: int) -> None:
        self._measured.pop(key, None)
        if len(self._measured) >= self._MEASURED_LIMIT:
            del self._measured[next(iter(self._measured))]  # the oldest
        self._measured[key] = memory

    async def _admit(self, memory: int, key: Key) -> None:
        """Reserve `memory` in the budget, evicting least recently used unpinned versions."""
        if memory > self._budget:
            raise ResourceExhaustedError(
                f"model version {VersionKey(*key)} needs about {memory} bytes of memory "
                f"(estimated before loading); the memory budget is {self._budget} bytes",
                reason="MEMORY_BUDGET",
            )
        async with self._admission:
            await self._make_room(key, memory, "estimated before loading")
            self._memory += memory
            self._metrics.memory_bytes.set(self._memory)

    async def _settle(self, served: ServedVersion) -> None:
        """Check the budget again with the measured figure (already counted in it): evict
        least recently used unpinned versions, or release `served` and refuse."""
        key = served.key
        async with self._admission:
            self._metrics.memory_bytes.set(self._memory)
            if self._memory <= self._budget:
                return
            try:
                if served.memory_bytes > self._budget:
                    raise ResourceExhaustedError(
                        f"model version {VersionKey(*key)} takes {served.memory_bytes} bytes "
                        f"of memory (measured when it loaded; its artifact is "
                        f"{served.info.size_bytes} bytes); the memory budget is "
                        f"{self._budget} bytes: it was unloaded again",
                        reason="MEMORY_BUDGET",
                    )
                await self._make_room(key, 0, "measured when it loaded", served)
            except BaseException:
                await served.batcher.close()
                await self._release_instances(served.instances)
                raise

    async def _make_room(
        self, key: Key, memory: int, how: str, loading: ServedVersion | None = None
    ) -> None:
        """Evict least recently used versions (not pinned, not `key`) until `memory` more
        bytes fit in the budget; ResourceExhaustedError when they cannot. Call under the
        admission lock."""
        while self._memory + memory > self._budget:
            victims = [
                s
                for k, s in self._served.items()
                if k != key and not self._pins.get(k) and s.state is VersionState.READY
            ]
            evictable = sum(s.memory_bytes for s in victims)
            if self._memory + memory - evictable > self._budget:  # evicting would not do
                needed = memory if loading is None else loading.memory_bytes
                fixed = self._memory - evictable - (0 if loading is None else needed)
                raise ResourceExhaustedError(
                    f"no memory for model version {VersionKey(*key)} ({needed} bytes, "
                    f"{how}): the memory budget is {self._budget} bytes and {fixed} of them "
                    "are held by versions that deployments keep loaded or that are still "
                    "loading; raise memory_budget_bytes, or unload or undeploy a version",
                    reason="MEMORY_BUDGET",
                )
            victim = min(victims, key=lambda s: s.last_used)
            log.info("evicting %s (least recently used) for %s", victim.key, key)
            del self._served[victim.key]
            await self._retire(victim, "evicted")

    async def _release_instances(self, instances: Sequence[OrtInstance]) -> int:
        """Close sessions and give their memory back to the kernel (one at a time with
        measurements, so that a load never counts memory another version frees)."""

        def close() -> None:
            for instance in instances:
                instance.close()

        return await self._meter.release(close)

    def _publish_memory(self, key: Key) -> None:
        """The per-version memory gauge: what the copies of `key` hold (removed at 0)."""
        held = sum(
            s.memory_bytes for s in (*self._served.values(), *self._retiring) if s.key == key
        )
        labels = (key[0], str(key[1]))
        if held:
            self._metrics.version_memory_bytes.labels(*labels).set(held)
        else:
            with contextlib.suppress(KeyError):
                self._metrics.version_memory_bytes.remove(*labels)

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
        released = 0
        try:
            await served.drain()
            await served.batcher.close()
            released = await self._release_instances(served.instances)
        finally:
            self._retiring.discard(served)
            self._memory -= served.memory_bytes
            self._metrics.memory_bytes.set(self._memory)
            self._publish_memory(served.key)
            self._metrics.unloads.labels(served.info.model, cause).inc()
            served.telemetry.queue_depth(0)
            if served.key in self._pins and served.key not in self._served:
                self._status.setdefault(served.key, (VersionState.UNAVAILABLE, cause))
        log.info(
            "model version %s/%s unloaded (%s): %d bytes accounted, %d bytes left the resident set",
            *served.key,
            cause,
            served.memory_bytes,
            released,
        )

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
        self._meter.close()

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
    def memory_budget(self) -> int:
        return self._budget

    def devices(self) -> list[str]:
        """Devices sessions run on here: "cuda:0" when CUDA really works, and "cpu"
        (blocking the first time: the CUDA probe)."""
        return ["cuda:0", "cpu"] if self._factory.cuda_usable() else ["cpu"]

    @property
    def cache(self) -> ArtifactCache:
        return self._cache
