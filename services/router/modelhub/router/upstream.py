"""The router's calls to the inference replicas and to the registry on behalf of a caller
(Triton's repository extensions through the front door): cached channels, and errors of
the service called turned back into domain errors (same status code, reason and
metadata), so that the router's edge answers the caller as the service answered it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc as rpb_grpc
from modelhub.common import errors
from modelhub.common.channels import Metadata, service_channel
from modelhub.common.settings import TlsSettings
from modelhub.common.status import domain_error

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplicaStubs:
    """The stubs of one inference replica."""

    address: str
    oip: opb_grpc.GRPCInferenceServiceStub
    repository: ipb_grpc.ModelRepositoryServiceStub
    health: health_pb2_grpc.HealthStub


class Replicas:
    """Channels to the inference replicas, opened on first use and closed with the router."""

    def __init__(self, max_message_bytes: int = 64 << 20, tls: TlsSettings | None = None) -> None:
        self._max_message_bytes = max_message_bytes
        self._tls = tls
        self._channels: dict[str, tuple[grpc.aio.Channel, ReplicaStubs]] = {}

    def stubs(self, address: str) -> ReplicaStubs:
        entry = self._channels.get(address)
        if entry is None:
            channel = service_channel(address, self._max_message_bytes, self._tls)
            stubs = ReplicaStubs(
                address,
                opb_grpc.GRPCInferenceServiceStub(channel),
                ipb_grpc.ModelRepositoryServiceStub(channel),
                health_pb2_grpc.HealthStub(channel),
            )
            entry = self._channels[address] = (channel, stubs)
        return entry[1]

    async def each(
        self,
        addresses: Sequence[str],
        call: Callable[[ReplicaStubs], Awaitable[T]],
        what: str,
    ) -> dict[str, T | errors.ModelHubError]:
        """`call` on every replica at once: address → its answer, or the domain error it
        failed with."""

        answers = await asyncio.gather(*(self.one(a, call, what) for a in addresses))
        return dict(zip(addresses, answers, strict=True))

    async def one(
        self, address: str, call: Callable[[ReplicaStubs], Awaitable[T]], what: str
    ) -> T | errors.ModelHubError:
        """`call` on one replica: its answer, or the domain error it failed with."""
        try:
            return await call(self.stubs(address))
        except grpc.aio.AioRpcError as exc:
            return domain_error(exc, f"{what} on {address}")

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close(None)


class RegistryDeployments:
    """The registry's deployments, read and changed with the caller's credentials (the
    registry decides whether the caller may)."""

    def __init__(
        self, address: str, max_message_bytes: int = 64 << 20, tls: TlsSettings | None = None
    ) -> None:
        self._address = address
        self._max_message_bytes = max_message_bytes
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._stub: rpb_grpc.RegistryServiceStub | None = None

    def _registry(self) -> rpb_grpc.RegistryServiceStub:
        if self._stub is None:
            self._channel = service_channel(self._address, self._max_message_bytes, self._tls)
            self._stub = rpb_grpc.RegistryServiceStub(self._channel)
        return self._stub

    async def _call(self, call: Awaitable[T], what: str) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, f"the registry refused {what}") from None

    async def of_model(
        self, model: str, credentials: Metadata, timeout_s: float
    ) -> list[rpb.Deployment]:
        """Every deployment of `model`."""
        found: list[rpb.Deployment] = []
        token = ""
        while True:
            page = await self._call(
                self._registry().ListDeployments(
                    rpb.ListDeploymentsRequest(
                        model=f"models/{model}", page_size=100, page_token=token
                    ),
                    metadata=credentials,
                    timeout=timeout_s,
                ),
                f"listing the deployments of model {model!r}",
            )
            found.extend(page.deployments)
            token = page.next_page_token
            if not token:
                return found

    async def resolve(
        self, reference: str, credentials: Metadata, timeout_s: float
    ) -> rpb.ModelVersion:
        """The version a reference (`m@champion`, `m@latest`) names now."""
        return await self._call(
            self._registry().ResolveModelVersion(
                rpb.ResolveModelVersionRequest(reference=reference, view=rpb.BASIC),
                metadata=credentials,
                timeout=timeout_s,
            ),
            f"resolving {reference}",
        )

    async def create(
        self, deployment_id: str, spec: rpb.Deployment, credentials: Metadata, timeout_s: float
    ) -> rpb.Deployment:
        return await self._call(
            self._registry().CreateDeployment(
                rpb.CreateDeploymentRequest(deployment_id=deployment_id, deployment=spec),
                metadata=credentials,
                timeout=timeout_s,
            ),
            f"creating deployments/{deployment_id}",
        )

    async def delete(
        self, deployment: rpb.Deployment, credentials: Metadata, timeout_s: float
    ) -> None:
        await self._call(
            self._registry().DeleteDeployment(
                rpb.DeleteDeploymentRequest(name=deployment.name, etag=deployment.etag),
                metadata=credentials,
                timeout=timeout_s,
            ),
            f"deleting {deployment.name}",
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = self._stub = None
