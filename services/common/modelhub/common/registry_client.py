"""A service's connection to the registry: one channel (the suite's TLS, the service's
bearer token), calls that fail as domain errors, and the Watch feed as typed events for
`modelhub.common.watch.WatchFollower`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc as rpb_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.contract import ResourceKind, WatchEvent
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.registry_view import KINDS_TO_PB, event_from_pb
from modelhub.common.settings import RegistryClientSettings, TlsSettings
from modelhub.common.status import domain_error
from modelhub.common.watch import OpenStream

log = logging.getLogger("modelhub.common.registry_client")


class RegistryConnection:
    """A channel to the registry with the service's credentials and call deadline.

    Create it inside the running event loop (it opens a `grpc.aio` channel)."""

    def __init__(
        self,
        settings: RegistryClientSettings,
        *,
        tls: TlsSettings | None = None,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        self.address = settings.address
        self.timeout_s = settings.timeout_s
        self.metadata = bearer(settings.token)
        self.channel = service_channel(settings.address, max_message_bytes, tls)
        self.stub = rpb_grpc.RegistryServiceStub(self.channel)

    async def get_version(self, name: str, *, full: bool = False) -> rpb.ModelVersion:
        """GetModelVersion (`models/{m}/versions/{n}` or `models/{m}@{alias}`); the
        registry's refusal as a domain error (NotFoundError, UnavailableError, …)."""
        request = rpb.GetModelVersionRequest(name=name, view=rpb.FULL if full else rpb.BASIC)
        try:
            reply: rpb.ModelVersion = await self.stub.GetModelVersion(
                request, metadata=self.metadata, timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, f"reading {name} from the registry at {self.address}") from None
        return reply

    def watch(self, kinds: Iterable[ResourceKind]) -> OpenStream:
        """The Watch feed of `kinds`, from a revision: what a `WatchFollower` follows."""
        wanted = [KINDS_TO_PB[kind] for kind in kinds]

        async def open_stream(start_revision: int) -> AsyncIterator[WatchEvent]:
            request = rpb.WatchRequest(start_revision=start_revision, kinds=wanted)
            stream: Any = self.stub.Watch(request, metadata=self.metadata)
            try:
                async for message in stream:
                    event = _event(message)
                    if event is not None:
                        yield event
            except grpc.aio.AioRpcError as exc:
                what = f"watching the registry at {self.address} from revision {start_revision}"
                raise domain_error(exc, what) from None
            finally:
                stream.cancel()

        return open_stream

    async def close(self) -> None:
        await self.channel.close()


def _event(message: rpb.WatchEvent) -> WatchEvent | None:
    """The typed event; None (logged) for one whose names break the registry's own rules,
    which a newer or broken registry could send: the rest of the feed still applies."""
    try:
        return event_from_pb(message)
    except InvalidArgumentError as exc:
        log.warning(
            "skipping a malformed watch event at revision %d (%s): %s",
            message.revision,
            message.name[:100],
            exc.message,
        )
        return None
