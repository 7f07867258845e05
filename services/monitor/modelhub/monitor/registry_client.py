"""Reads versions' data profiles from the registry, the default drift baselines."""

from __future__ import annotations

import grpc

from modelhub.api.registry.v1 import registry_pb2, registry_pb2_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.errors import UnavailableError
from modelhub.monitor.convert import profile_from_proto
from modelhub.monitor.profile import DataProfile


class RegistryProfiles:
    """A `monitor.BaselineSource` backed by the registry's GetModelVersion (FULL view).

    Create it inside the running event loop (it owns a `grpc.aio` channel)."""

    def __init__(self, address: str, token: str = "", timeout_s: float = 5.0) -> None:
        self.address = address
        self._channel = service_channel(address)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._metadata = bearer(token)
        self._timeout_s = timeout_s

    async def __call__(self, model: str, version: int) -> DataProfile | None:
        """The version's data profile; None when the version or its profile is absent."""
        request = registry_pb2.GetModelVersionRequest(
            name=f"{model}/versions/{version}", view=registry_pb2.FULL
        )
        try:
            reply = await self._stub.GetModelVersion(
                request, timeout=self._timeout_s, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise UnavailableError(
                f"cannot read the baseline of {model} version {version} from the registry at "
                f"{self.address}: {exc.code().name} {exc.details()}",
                metadata={"registry": self.address},
            ) from exc
        if not reply.HasField("data_profile"):
            return None
        return profile_from_proto(reply.data_profile)

    async def close(self) -> None:
        await self._channel.close()
