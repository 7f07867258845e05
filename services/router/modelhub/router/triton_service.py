"""Triton's repository and statistics extensions for the whole deployment: what the router
answers for them behind the front door (docs/data-plane.md).

* `index`: every replica's repository index, merged (`triton.merge_index`).
* `load`: a registry deployment keeps the model loaded on every replica (an existing one
  of the model, else one created as `deployments/{model}` for its default version); the
  call answers once every replica serves the version(s) it selects, or when one failed to
  load it.
* `unload`: the model's deployments are deleted, then every replica unloads it.
* `statistics`: every replica's statistics, summed (`triton.sum_statistics`).

Registry changes and unloads act with the caller's credentials (the registry and the
replicas decide whether the caller may); reads of the replicas use the router's backend
token. A replica that does not answer a read is left out (logged, and counted in the
answer's `x-modelhub-replicas` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common import errors
from modelhub.common.channels import Metadata, bearer
from modelhub.common.names import is_decimal
from modelhub.router.triton import (
    IndexRow,
    Key,
    ReplicaEntry,
    State,
    load_progress,
    merge_index,
    sum_statistics,
)
from modelhub.router.upstream import RegistryDeployments, Replicas, ReplicaStubs

log = logging.getLogger("modelhub.router.triton")

T = TypeVar("T")

LATEST = "latest"
# Labels the deployments a front-door load creates.
CREATED_BY_LABEL = "created-by"
CREATED_BY = "repository-load"

# Errors of a replica that are the caller's or the setup's, not the replica's health: they
# are answered as they are instead of leaving the replica out.
_CALLER_ERRORS = (
    errors.InvalidArgumentError,
    errors.UnauthenticatedError,
    errors.PermissionDeniedError,
)


@dataclass(frozen=True, slots=True)
class Fanout:
    """How many replicas a read asked, and which did not answer."""

    asked: int
    skipped: tuple[str, ...] = ()

    @property
    def answered(self) -> int:
        return self.asked - len(self.skipped)

    def header(self) -> str:
        """`answered/asked`, the value of the `x-modelhub-replicas` header."""
        return f"{self.answered}/{self.asked}"


def _entries(response: ipb.RepositoryIndexResponse) -> list[ReplicaEntry]:
    found = []
    for entry in response.models:
        if not is_decimal(entry.version) or entry.state == ipb.MODEL_STATE_UNSPECIFIED:
            continue
        state = State[ipb.ModelState.Name(entry.state)]
        found.append(
            ReplicaEntry(entry.name, int(entry.version), state, entry.reason, entry.pinned)
        )
    return found


class _Clock:
    """A deadline and what is left of it."""

    def __init__(self, budget_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.budget_s = budget_s
        self.deadline = self._loop.time() + budget_s

    def left(self, cap: float | None = None) -> float:
        left = max(0.001, self.deadline - self._loop.time())
        return left if cap is None else min(cap, left)

    @property
    def expired(self) -> bool:
        return self._loop.time() >= self.deadline


class FrontDoorRepository:
    """The deployment-wide repository operations (see the module docstring)."""

    def __init__(
        self,
        addresses: Callable[[], Sequence[str]],
        deployed: Callable[[], Collection[Key]],
        replicas: Replicas,
        registry: RegistryDeployments,
        *,
        backend_token: str = "",
        default_alias: str = "champion",
        replica_timeout_s: float = 5.0,
        poll_interval_s: float = 0.1,
    ) -> None:
        self._addresses = addresses
        self._deployed = deployed
        self._replicas = replicas
        self._registry = registry
        self._backend = bearer(backend_token)
        self._default_alias = default_alias
        self._replica_timeout = replica_timeout_s
        self._poll = poll_interval_s

    # ----------------------------------------------------------------------- reads

    @staticmethod
    def _answered(
        answers: Mapping[str, T | errors.ModelHubError], what: str
    ) -> tuple[dict[str, T], tuple[str, ...]]:
        """The answers that came, and the replicas left out (logged); UNAVAILABLE when
        none answered."""
        came: dict[str, T] = {}
        failed: dict[str, errors.ModelHubError] = {}
        for address, answer in answers.items():
            if isinstance(answer, errors.ModelHubError):
                failed[address] = answer
                log.warning(
                    "%s: replica %s left out: %s",
                    what,
                    address,
                    answer.message,
                    extra={"fields": {"event": "replica_skipped", "replica": address}},
                )
            else:
                came[address] = answer
        if not answers:
            raise errors.UnavailableError(
                f"{what}: the router knows no inference replica", reason="NO_REPLICA"
            )
        if not came:
            reasons = "; ".join(error.message for error in failed.values())
            raise errors.UnavailableError(
                f"{what}: no inference replica answered ({reasons})", reason="NO_REPLICA"
            )
        return came, tuple(failed)

    async def _indexes(
        self, addresses: Sequence[str], timeout_s: float
    ) -> tuple[dict[str, list[ReplicaEntry]], tuple[str, ...]]:
        async def call(stubs: ReplicaStubs) -> list[ReplicaEntry]:
            response = await stubs.repository.RepositoryIndex(
                ipb.RepositoryIndexRequest(), metadata=self._backend, timeout=timeout_s
            )
            return _entries(response)

        answers = await self._replicas.each(addresses, call, "repository index")
        return self._answered(answers, "repository index")

    async def index(
        self, ready_only: bool, timeout_s: float | None
    ) -> tuple[list[IndexRow], Fanout]:
        """The deployment's repository index (only READY rows if `ready_only`)."""
        addresses = tuple(self._addresses())
        timeout = min(self._replica_timeout, timeout_s or self._replica_timeout)
        indexes, skipped = await self._indexes(addresses, timeout)
        rows = merge_index(indexes, self._deployed(), ready_only=ready_only)
        return rows, Fanout(len(addresses), skipped)

    async def statistics(
        self, model: str, version: str, timeout_s: float | None
    ) -> tuple[list[opb.ModelStatistics], Fanout]:
        """Every replica's statistics of the versions matching `model` and `version` (empty:
        any), summed per version."""
        addresses = tuple(self._addresses())
        timeout = min(self._replica_timeout, timeout_s or self._replica_timeout)

        async def call(stubs: ReplicaStubs) -> list[opb.ModelStatistics]:
            response = await stubs.oip.ModelStatistics(
                opb.ModelStatisticsRequest(name=model, version=version),
                metadata=self._backend,
                timeout=timeout,
            )
            return list(response.model_stats)

        answers = await self._replicas.each(addresses, call, "statistics")
        for address, answer in answers.items():
            if isinstance(answer, errors.NotFoundError):
                answers[address] = []  # nothing matching is loaded there
            elif isinstance(answer, _CALLER_ERRORS):
                raise answer
        came, skipped = self._answered(answers, "statistics")
        summed = sum_statistics(came.values())
        if (model or version) and not summed:
            raise errors.NotFoundError(
                f"no replica has a loaded version matching model {model!r} version {version!r}",
                metadata={"model": model, "version": version},
            )
        return summed, Fanout(len(addresses), skipped)

    # --------------------------------------------------------------------- changes

    async def _selector(self, model: str, credentials: Metadata, clock: _Clock) -> str:
        """The alias a plain model name follows: the default alias when the model has it,
        else `latest` (the registry's NOT_FOUND when the model has no READY version)."""
        if self._default_alias and self._default_alias != LATEST:
            with contextlib.suppress(errors.NotFoundError):
                await self._registry.resolve(
                    f"{model}@{self._default_alias}", credentials, clock.left()
                )
                return self._default_alias
        await self._registry.resolve(f"{model}@{LATEST}", credentials, clock.left())
        return LATEST

    async def load(self, model: str, credentials: Metadata, budget_s: float) -> None:
        """Deploy `model` (unless a deployment keeps it loaded already) and wait until every
        replica serves it."""
        if not model:
            raise errors.InvalidArgumentError("model_name is required", field="model_name")
        clock = _Clock(budget_s)
        deployments = await self._registry.of_model(model, credentials, clock.left())
        created: rpb.Deployment | None = None
        if not deployments:
            alias = await self._selector(model, credentials, clock)
            spec = rpb.Deployment(
                model=f"models/{model}",
                versions=[rpb.VersionSelector(alias=alias)],
                labels={CREATED_BY_LABEL: CREATED_BY},
            )
            try:
                created = await self._registry.create(model, spec, credentials, clock.left())
                deployments = [created]
                log.info(
                    "deployed model %s (%s) for a repository load",
                    model,
                    alias,
                    extra={"fields": {"event": "repository_load", "model": model}},
                )
            except errors.AlreadyExistsError:
                # A concurrent load created it, or the id belongs to another model's.
                deployments = await self._registry.of_model(model, credentials, clock.left())
                if not deployments:
                    raise errors.FailedPreconditionError(
                        f"deployments/{model} exists for another model: deploy model "
                        f"{model!r} through the registry instead",
                        reason="DEPLOYMENT_ID_TAKEN",
                    ) from None
        wanted = sorted(
            {(model, s.resolved_version) for d in deployments for s in d.versions} - {(model, 0)}
        )
        if not wanted:
            raise errors.FailedPreconditionError(
                f"the deployments of model {model!r} ({', '.join(d.name for d in deployments)}) "
                "select no READY version",
                reason="NO_READY_VERSION",
                metadata={"model": model},
            )
        await self._wait_ready(model, wanted, clock, created, credentials)

    async def _wait_ready(
        self,
        model: str,
        wanted: list[Key],
        clock: _Clock,
        created: rpb.Deployment | None,
        credentials: Metadata,
    ) -> None:
        while True:
            answers = await self._replicas.each(
                tuple(self._addresses()),
                lambda stubs: stubs.repository.RepositoryIndex(
                    ipb.RepositoryIndexRequest(),
                    metadata=self._backend,
                    timeout=clock.left(self._replica_timeout),
                ),
                "repository index",
            )
            indexes = {
                a: _entries(r)
                for a, r in answers.items()
                if isinstance(r, ipb.RepositoryIndexResponse)
            }
            progress = load_progress(indexes, wanted)
            if progress.ready:
                return
            if progress.failure:
                message = progress.failure
                if created is not None:
                    # Triton's load fails without leaving the model half-deployed.
                    try:
                        await self._registry.delete(created, credentials, clock.left(5.0))
                        message += f" ({created.name}, created for this load, was deleted)"
                    except errors.ModelHubError as exc:
                        message += f" ({created.name} stays: deleting it failed: {exc.message})"
                raise errors.UnavailableError(
                    message, reason="LOAD_FAILED", metadata={"model": model}
                )
            if clock.expired:
                raise errors.ModelNotReadyError(
                    f"model {model!r} is not ready on every replica after {clock.budget_s:g} s "
                    f"({progress.waiting}); the deployment stays and the replicas go on "
                    "loading it",
                    metadata={"model": model},
                )
            await asyncio.sleep(min(self._poll, clock.left()))

    async def unload(self, model: str, credentials: Metadata, budget_s: float) -> None:
        """Delete the model's deployments, then unload it from every replica."""
        if not model:
            raise errors.InvalidArgumentError("model_name is required", field="model_name")
        clock = _Clock(budget_s)
        deployments = await self._registry.of_model(model, credentials, clock.left())
        for deployment in deployments:
            with contextlib.suppress(errors.NotFoundError):  # deleted meanwhile
                await self._registry.delete(deployment, credentials, clock.left())
        if deployments:
            log.info(
                "deleted %s for a repository unload",
                ", ".join(d.name for d in deployments),
                extra={"fields": {"event": "repository_unload", "model": model}},
            )
        addresses = tuple(self._addresses())
        results = await asyncio.gather(
            *(self._unload_on(a, model, credentials, clock) for a in addresses)
        )
        outcome = dict(zip(addresses, results, strict=True))
        for error in outcome.values():
            # The caller may not, or a replica still keeps the model for a deployment.
            if isinstance(error, (*_CALLER_ERRORS, errors.FailedPreconditionError)):
                raise error
        came, _ = self._answered(outcome, f"unloading model {model!r}")
        if not deployments and all(r == "absent" for r in came.values()):
            raise errors.NotFoundError(
                f"model {model!r} is neither deployed nor loaded on any replica",
                metadata={"model": model},
            )

    async def _unload_on(
        self, address: str, model: str, credentials: Metadata, clock: _Clock
    ) -> str | errors.ModelHubError:
        """ "unloaded", "absent" (nothing loaded there), or why the replica did not answer.
        A replica still keeping the model for a deployment has not seen the deployment's
        deletion yet: asked again until it has."""
        request = opb.RepositoryModelUnloadRequest(model_name=model)
        while True:
            answer = await self._replicas.one(
                address,
                lambda s: s.oip.RepositoryModelUnload(
                    request, metadata=credentials, timeout=clock.left()
                ),
                f"unloading model {model!r}",
            )
            if not isinstance(answer, errors.ModelHubError):
                return "unloaded"
            if isinstance(answer, errors.NotFoundError):
                return "absent"
            if not isinstance(answer, errors.FailedPreconditionError) or clock.expired:
                return answer
            await asyncio.sleep(min(self._poll, clock.left()))
