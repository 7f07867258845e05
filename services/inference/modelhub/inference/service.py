"""The inference data plane, transport-neutral: validate a request against its version,
queue it on that version's batcher, and shape the answer. The servicers in `api` and
`repository_api` only translate protobuf to these calls and back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from opentelemetry.trace import SpanContext

from modelhub.common.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ModelHubError,
    NotFoundError,
)
from modelhub.common.names import is_decimal
from modelhub.common.version import __version__
from modelhub.inference.batcher import INF
from modelhub.inference.deployments import DeploymentWatcher
from modelhub.inference.repository import IndexEntry, ModelRepository, ServedVersion
from modelhub.inference.request import InferRequest, InferResult, OutputTensor
from modelhub.inference.routing import version_reference
from modelhub.inference.signature import ModelSignature
from modelhub.inference.spec import Device, LoadOptions, LoadOverrides, ModelSchema

SERVER_NAME = "modelhub-inference"
EXTENSIONS = (
    "model_repository",
    "model_configuration",
    "statistics",
    "schedule_policy",
    "parameters",
    "binary_tensor_data",
)
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """What ModelMetadata answers."""

    name: str
    versions: list[str]
    platform: str
    schema: ModelSchema


@dataclass(frozen=True, slots=True)
class ModelConfiguration:
    """What ModelConfig answers: a version's tensors and the settings it is (or would
    be) loaded with."""

    name: str
    version: int
    platform: str
    schema: ModelSchema
    # Largest batch in rows; 0 when the model cannot batch (one request per run).
    max_batch_size: int
    options: LoadOptions
    # Where its instances run: CPU or GPU once served, else the configured device.
    device: Device


class InferenceService:
    """Serving operations over a repository of model versions."""

    def __init__(
        self, repository: ModelRepository, watcher: DeploymentWatcher | None = None
    ) -> None:
        self.repository = repository
        self.watcher = watcher
        self.name = SERVER_NAME
        self.version = __version__
        self.extensions = EXTENSIONS
        self._shutting_down = False

    def ready(self) -> bool:
        """Ready to serve: not shutting down, and the deployments (if followed) applied
        once."""
        if self._shutting_down:
            return False
        return self.watcher is None or self.watcher.synced.is_set()

    def shutting_down(self) -> None:
        self._shutting_down = True

    async def infer(
        self,
        request: InferRequest,
        time_remaining: float | None = None,
        span_context: SpanContext | None = None,
        *,
        may_load: bool = True,
    ) -> InferResult:
        """Run one request through its version's batcher.

        `time_remaining` is the transport deadline (seconds, None: none); the request's
        own `timeout_s` and the version's default timeout may shorten it. `may_load`:
        whether the caller may load a version on demand (`ModelRepository.acquire`).
        Raises domain errors: NotFoundError, InvalidArgumentError, QueueFullError,
        DeadlineExpiredError, PermissionDeniedError…
        """
        start = time.perf_counter()
        repository = self.repository
        served = repository.lookup(request.model, request.version)
        if served is None:
            served = await repository.acquire(request.model, request.version, may_load=may_load)
        served.enter()
        request.served_version = served.info.version
        try:
            signature = served.signature
            arrays, rows, key = signature.prepare(request.inputs)
            indices = signature.output_indices(request.outputs)
            policy = served.batcher.policy
            # The transport enforces its own deadline; the batcher answers for the others.
            timeout = time_remaining
            server_deadline = False
            own = request.timeout_s or policy.default_timeout_s or None
            if own is not None and (timeout is None or own < timeout):
                timeout, server_deadline = own, True
            deadline = INF if timeout is None else asyncio.get_running_loop().time() + timeout
            future = served.batcher.submit(
                arrays,
                rows,
                key,
                priority=request.priority,
                background=request.background,
                deadline=deadline,
                server_deadline=server_deadline,
                span_context=span_context,
            )
            try:
                outputs = await future
            except ModelHubError:  # failed after admission (expired, run failed, unloaded)
                served.telemetry.request_done(False, time.perf_counter() - start)
                raise
            served.telemetry.request_done(True, time.perf_counter() - start)
        finally:
            served.leave()
        specs = signature.outputs
        return InferResult(
            served.info.model,
            served.info.version,
            [OutputTensor(specs[i].name, specs[i].datatype, outputs[i]) for i in indices],
        )

    async def model_readiness(self, model: str, version: str) -> tuple[bool, str]:
        """Whether the version is served here now, and why not (never loads anything).
        NOT_FOUND for a model or version that does not exist."""
        if self.repository.lookup(model, version) is not None:
            return True, ""
        info = await self.repository.resolve(model, version)
        if self.repository.lookup(model, str(info.version)) is not None:
            return True, ""
        where = f"version {info.version} of model {model!r}"
        if self.repository.is_pinned((model, info.version)):
            return False, (
                f"{where} is deployed here and not loaded yet (loading, or its load failed: "
                "RepositoryIndex gives the reason)"
            )
        if not self.repository.load_on_demand:
            return False, (
                f"{where} is not loaded on this server; it is not deployed here and loading "
                "on demand is off (LoadModel loads it)"
            )
        return False, (
            f"{where} is not loaded on this server; it is not deployed here and loads on "
            "demand with the first inference request of a caller that may load models"
        )

    async def model_ready(self, model: str, version: str) -> bool:
        """Whether the version is served here now (never loads anything)."""
        served = self.repository.lookup(model, version)
        if served is None and not is_decimal(version):
            try:
                info = await self.repository.resolve(model, version)
            except ModelHubError:
                return False
            served = self.repository.lookup(model, str(info.version))
        return served is not None

    async def model_metadata(
        self, model: str, version: str, *, may_load: bool = True
    ) -> ModelDescription:
        """Inputs and outputs of a version (its session's when served, else the source's
        schema: describing a model does not load it, unless its schema is unknown; then it
        loads on demand as for a request)."""
        info, schema = await self.repository.schema(model, version)
        if schema is None:
            served = await self.repository.acquire(model, str(info.version), may_load=may_load)
            schema = served.signature.schema
        versions = {str(v) for v in self.repository.known_versions(model)}
        versions.add(str(info.version))
        return ModelDescription(
            name=model,
            versions=sorted(versions, key=int),
            platform=PLATFORM,
            schema=schema,
        )

    async def model_config(
        self, model: str, version: str, *, may_load: bool = True
    ) -> ModelConfiguration:
        """A version's configuration: its own settings when served here, else the server
        defaults (describing a model does not load it unless its schema is unknown; then it
        loads on demand as for a request)."""
        info, schema = await self.repository.schema(model, version)
        served = self.repository.lookup(model, str(info.version))
        if served is None and schema is None:
            served = await self.repository.acquire(model, str(info.version), may_load=may_load)
        if served is not None:
            schema = served.signature.schema
            options = served.options
            device = Device.GPU if "CUDA" in served.provider else Device.CPU
        else:
            assert schema is not None
            options = self.repository.options_for(None)
            device = options.runtime.device
        signature = ModelSignature(schema, options.batching.max_batch_size)
        return ModelConfiguration(
            name=model,
            version=info.version,
            platform=PLATFORM,
            schema=schema,
            max_batch_size=signature.max_rows if signature.batchable else 0,
            options=options,
            device=device,
        )

    # ------------------------------------------------------------------ repository

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self.repository.index(ready_only)

    async def load_model(
        self, model: str, version: str, overrides: LoadOverrides | None = None
    ) -> IndexEntry:
        """Load a version (explicitly: evictable, not pinned) and wait until it serves."""
        if not model:
            raise InvalidArgumentError("model is required", field="model")
        served = await self.repository.load(model, version_reference(version, "version"), overrides)
        return next(e for e in self.repository.index() if (e.model, e.version) == served.key)

    async def unload_model(self, model: str, version: str) -> None:
        """Unload a version after its in-flight requests drain. Versions a deployment keeps
        loaded are refused: change the deployment instead."""
        if not model:
            raise InvalidArgumentError("model is required", field="model")
        if not is_decimal(version):
            raise InvalidArgumentError(
                f"version must be a version number, not {version[:64]!r}", field="version"
            )
        key = (model, int(version))
        if self.repository.is_pinned(key):
            raise FailedPreconditionError(
                f"model {model!r} version {version} is kept loaded by a deployment; change "
                "or delete the deployment instead",
                reason="DEPLOYED",
            )
        await self.repository.unload(model, int(version))

    async def unload_model_versions(self, model: str) -> list[int]:
        """Unload every loaded version of a model (Triton's unload), after their in-flight
        requests drain. Refused, unloading nothing, when a deployment keeps one loaded."""
        if not model:
            raise InvalidArgumentError("model is required", field="model")
        versions = sorted(s.info.version for s in self.repository.served(model))
        if not versions:
            raise NotFoundError(f"model {model!r} has no loaded version", metadata={"model": model})
        pinned = [v for v in versions if self.repository.is_pinned((model, v))]
        if pinned:
            raise FailedPreconditionError(
                f"model {model!r} version(s) {', '.join(map(str, pinned))} are kept loaded by a "
                "deployment; change or delete the deployment instead",
                reason="DEPLOYED",
            )
        await asyncio.gather(*(self.repository.unload(model, v) for v in versions))
        return versions

    def statistics(self, model: str = "", version: str = "") -> list[ServedVersion]:
        """Served versions matching the filters (empty: any), for their statistics."""
        found = [
            s
            for s in self.repository.served(model or None)
            if not version or str(s.info.version) == version
        ]
        if (model or version) and not found:
            raise NotFoundError(
                f"no loaded version matches model {model!r} version {version!r}",
                metadata={"model": model, "version": version},
            )
        return sorted(found, key=lambda s: s.key)
