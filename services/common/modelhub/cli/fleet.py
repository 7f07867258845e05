"""`modelhub fleet` and `modelhub deployments apply --wait`: the inference replicas and
what each has loaded, as the router sees them (`RouterService.ListReplicas`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.router.v1 import router_pb2 as rpb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.cli.output import Output, size, table
from modelhub.cli.session import Session
from modelhub.client import ClientError
from modelhub.common.channels import service_channel
from modelhub.common.errors import DeadlineExpiredError, FailedPreconditionError
from modelhub.common.names import bare_id

POLL_S = 0.5
CALL_TIMEOUT_S = 10.0
# The router may be briefly away (a restart) while a rollout is watched.
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _unimplemented(address: str) -> ClientError:
    return ClientError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"the router at {address} does not list inference replicas "
        "(RouterService.ListReplicas): upgrade the router",
    )


async def list_replicas(s: Session, request: rpb.ListReplicasRequest) -> rpb.ListReplicasResponse:
    async with service_channel(s.args.router) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        try:
            reply: rpb.ListReplicasResponse = await stub.ListReplicas(
                request, metadata=s.metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise _unimplemented(s.args.router) from None
            raise ClientError.from_rpc_error(exc) from None
    return reply


def _entry_model(entry: ipb.ModelIndexEntry) -> str:
    return bare_id(entry.name)


def device_text(entry: ipb.ModelIndexEntry) -> str:
    """Where the version's sessions run (`cuda:0`, `cpu`); `-` while not loaded."""
    provider = entry.execution_provider.removesuffix("ExecutionProvider").lower()
    return entry.device or provider or "-"


def _health(replica: rpb.Replica) -> str:
    return rpb.ReplicaHealth.Name(replica.health).removeprefix("REPLICA_HEALTH_")


def fleet_rows(replicas: Sequence[rpb.Replica]) -> list[tuple[str, ...]]:
    """One row per version a replica knows (loaded or not); a replica without any: one row
    with its devices, memory in use and budget, and why it is not serving."""
    rows: list[tuple[str, ...]] = []
    for r in replicas:
        for e in r.models:
            state = ipb.ModelState.Name(e.state)
            rows.append(
                (
                    r.address,
                    _health(r),
                    _entry_model(e),
                    e.version,
                    f"{state} ({e.reason})" if e.reason and e.state == ipb.FAILED else state,
                    device_text(e),
                    size(e.memory_bytes) if e.memory_bytes else "-",
                )
            )
        if not r.models:
            budget = f" of {size(r.memory_budget_bytes)}" if r.memory_budget_bytes else ""
            rows.append(
                (
                    r.address,
                    _health(r),
                    "-",
                    "-",
                    r.reason or "-",
                    ",".join(r.devices) or "-",
                    f"{size(r.memory_used_bytes)}{budget}",
                )
            )
    return rows


FLEET_HEADER = ["REPLICA", "HEALTH", "MODEL", "VERSION", "STATE", "DEVICE", "MEMORY"]


def fleet_text(reply: rpb.ListReplicasResponse) -> str:
    if not reply.replicas:
        return "the router lists no inference replica"
    return table(fleet_rows(reply.replicas), FLEET_HEADER)


async def fleet(s: Session) -> Output:
    request = rpb.ListReplicasRequest(model=s.args.model, version=s.args.version)
    reply = await list_replicas(s, request)
    return Output.of(reply, fleet_text(reply))


# ------------------------------------------------------------------------ rollout wait


def _missing(replica: rpb.Replica, model: str, versions: Sequence[int]) -> list[str]:
    entries = {e.version: e for e in replica.models if _entry_model(e) == model}
    missing = []
    for version in versions:
        entry = entries.get(str(version))
        if entry is None:
            missing.append(f"{model}:{version} not known")
        elif entry.state != ipb.READY:
            reason = f" ({entry.reason})" if entry.reason else ""
            missing.append(f"{model}:{version} {ipb.ModelState.Name(entry.state)}{reason}")
    return missing


def rollout_gaps(replicas: Sequence[rpb.Replica], model: str, versions: Sequence[int]) -> list[str]:
    """What keeps `versions` of `model` from being loaded (READY) on every replica, one
    entry per replica short of it; [] when the rollout is done. A replica that is not
    serving counts as short of it, and so does a fleet without replicas."""
    if not replicas:
        return ["the router lists no inference replica"]
    gaps = []
    for replica in replicas:
        if replica.health != rpb.SERVING:
            why = f" ({replica.reason})" if replica.reason else ""
            gaps.append(f"{replica.address} {_health(replica)}{why}")
            continue
        missing = _missing(replica, model, versions)
        if missing:
            gaps.append(f"{replica.address}: {', '.join(missing)}")
    return gaps


def deployed_versions(deployment: pb.Deployment) -> list[int]:
    return sorted({v.resolved_version for v in deployment.versions if v.resolved_version})


async def _poll(
    stub: router_pb2_grpc.RouterServiceStub, s: Session, model: str, versions: list[int]
) -> tuple[list[str], list[rpb.Replica]]:
    """(gaps, replicas) now; a router that is briefly away is a gap, not a failure."""
    try:
        reply: rpb.ListReplicasResponse = await stub.ListReplicas(
            rpb.ListReplicasRequest(model=model), metadata=s.metadata, timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise _unimplemented(s.args.router) from None
        if exc.code() not in _TRANSIENT:
            raise ClientError.from_rpc_error(exc) from None
        return [f"router {s.args.router}: {exc.code().name}: {exc.details()}"], []
    return rollout_gaps(reply.replicas, model, versions), list(reply.replicas)


async def wait_for_rollout(s: Session, deployment: pb.Deployment) -> list[rpb.Replica]:
    """Poll the router until every inference replica reports every version the deployment
    selects loaded (READY), or --timeout passes (DEADLINE_EXCEEDED, with what is missing)."""
    model = bare_id(deployment.model)
    versions = deployed_versions(deployment)
    if not versions:
        raise FailedPreconditionError(f"{deployment.name} selects no READY version to wait for")
    timeout = float(s.args.timeout)
    wanted = ", ".join(f"{model}:{v}" for v in versions)
    s.say(f"applied {deployment.name}; waiting up to {timeout:g} s for every replica: {wanted}")
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    async with service_channel(s.args.router) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        while True:
            gaps, replicas = await _poll(stub, s, model, versions)
            if not gaps:
                return replicas
            if gaps != shown:
                s.say("waiting: " + "; ".join(gaps))
                shown = gaps
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExpiredError(
                    f"{deployment.name} is not rolled out after {timeout:g} s: " + "; ".join(gaps),
                    reason="ROLLOUT_TIMEOUT",
                )
            await asyncio.sleep(min(POLL_S, left))


def rollout_done(deployment: pb.Deployment, replicas: Sequence[rpb.Replica]) -> str:
    wanted = ", ".join(f"{bare_id(deployment.model)}:{v}" for v in deployed_versions(deployment))
    where = ", ".join(r.address for r in replicas)
    return f"rolled out: {wanted} loaded on {len(replicas)} replica(s) ({where})"
