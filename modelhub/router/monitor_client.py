"""The monitor as an `EventSink`: batches of events over `IngestEvents`, outcomes over
`RecordOutcomes`. Every call is bounded by a timeout, so an unreachable monitor costs the
sender task one timeout per flush, and the data path nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.errors import UnavailableError
from modelhub.router import convert
from modelhub.router.events import Event, Outcome, SendResult


class MonitorSink:
    """Sends router events and outcomes to the monitor service."""

    def __init__(
        self,
        address: str,
        *,
        token: str = "",
        timeout_s: float = 5.0,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        self.address = address
        self._channel = service_channel(address, max_message_bytes)
        self._stub = mpb_grpc.MonitorServiceStub(self._channel)
        self._metadata = bearer(token)
        self._timeout = timeout_s

    async def send_events(self, events: Sequence[Event]) -> SendResult:
        request = convert.events_to_pb(events)

        async def batches() -> AsyncIterator[mpb.IngestEventsRequest]:
            yield request

        try:
            response = await self._stub.IngestEvents(
                batches(), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"monitor {self.address}: {exc.code().name}: {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from None
        return SendResult(response.accepted, response.rejected, response.dropped)

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        try:
            await self._stub.RecordOutcomes(
                convert.outcomes_to_pb(outcomes), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"monitor {self.address}: {exc.code().name}: {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from None

    async def close(self) -> None:
        await self._channel.close()
