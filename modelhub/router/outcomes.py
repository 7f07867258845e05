"""Outcomes (conversions, rewards, labels) reported to the router, forwarded to the monitor.

The monitor attributes each outcome to the variant that served the request id: inference
reports every request it serves (with endpoint and variant), so the join happens where
both arrive. The router validates the outcome and forwards it at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.errors import InvalidArgumentError, UnavailableError

KINDS = ("conversion", "reward", "label")


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    value: float
    kind: str
    time: float  # epoch seconds


def validated(request_id: str, value: float, kind: str) -> Outcome:
    """The outcome, or InvalidArgumentError saying what is wrong with it."""
    if not request_id:
        raise InvalidArgumentError("request_id is required", field="request_id")
    if not math.isfinite(value):
        raise InvalidArgumentError(f"value must be finite, got {value}", field="value")
    kind = kind or "conversion"
    if kind not in KINDS:
        raise InvalidArgumentError(
            f"kind must be one of {', '.join(KINDS)}; got {kind!r}", field="kind"
        )
    return Outcome(request_id, value, kind, time.time())


class OutcomeForwarder:
    """Sends outcomes to the monitor's `RecordOutcomes`; counts what it attributed."""

    def __init__(self, address: str, *, token: str = "", timeout_s: float = 5.0) -> None:
        self._channel = service_channel(address)
        self._stub = mpb_grpc.MonitorServiceStub(self._channel)
        self._metadata = bearer(token)
        self._timeout = timeout_s
        self.attributed = 0
        self.unattributed = 0

    async def send(self, outcome: Outcome) -> bool:
        """Forward one outcome; True when the monitor attributed it to a served request."""
        stamp = Timestamp()
        stamp.FromNanoseconds(int(outcome.time * 1e9))
        request = mpb.RecordOutcomesRequest(
            outcomes=[
                mpb.Outcome(
                    request_id=outcome.request_id,
                    value=outcome.value,
                    kind=outcome.kind,
                    time=stamp,
                )
            ]
        )
        try:
            reply = await self._stub.RecordOutcomes(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"the monitor did not take the outcome: {exc.code().name} {exc.details()}",
                reason="MONITOR_UNAVAILABLE",
            ) from exc
        attributed = reply.attributed > 0
        if attributed:
            self.attributed += 1
        else:
            self.unattributed += 1
        return attributed

    async def close(self) -> None:
        await self._channel.close(None)
