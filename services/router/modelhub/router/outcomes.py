"""Outcomes (conversions, rewards, labels) reported to the router, for the monitor.

The monitor attributes each outcome to the variant that served the request id: inference
reports every request it serves (with endpoint and variant), so the join happens where
both arrive. The router validates an outcome here and forwards it at once
(`OutcomeForwarder`, over the monitor client `modelhub.common.monitor_sink.MonitorSink`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.common.events import OUTCOME_KINDS, Outcome


def validated(request_id: str, value: float, kind: str) -> Outcome:
    """The outcome, or InvalidArgumentError saying what is wrong with it."""
    if not request_id:
        raise InvalidArgumentError("request_id is required", field="request_id")
    if not math.isfinite(value):
        raise InvalidArgumentError(f"value must be finite, got {value}", field="value")
    kind = kind or "conversion"
    if kind not in OUTCOME_KINDS:
        raise InvalidArgumentError(
            f"kind must be one of {', '.join(OUTCOME_KINDS)}; got {kind!r}", field="kind"
        )
    return Outcome(request_id, value, kind, time.time())


@dataclass(slots=True)
class OutcomeCounts:
    """Outcomes forwarded since the router started, by what the monitor made of them."""

    attributed: int = 0
    unattributed: int = 0

    def count(self, attributed: bool) -> None:
        if attributed:
            self.attributed += 1
        else:
            self.unattributed += 1


# Sends outcomes to the monitor; how many it attributed to a request it has seen.
SendOutcomes = Callable[[Sequence[Outcome]], Awaitable[int]]


@dataclass(slots=True)
class OutcomeForwarder:
    """Validates an outcome, forwards it to the monitor (`send`: None when the router has
    none) and counts what the monitor made of it."""

    send: SendOutcomes | None
    counts: OutcomeCounts = field(default_factory=OutcomeCounts)

    async def record(self, request_id: str, value: float, kind: str) -> bool:
        """True when the monitor attributed the outcome to the variant that served it."""
        outcome = validated(request_id, value, kind)
        if self.send is None:
            raise FailedPreconditionError(
                "the router has no monitor to attribute outcomes (set "
                "MODELHUB_ROUTER_MONITOR_ADDRESS), or send them to the monitor's RecordOutcomes",
                reason="NO_MONITOR",
            )
        attributed = await self.send([outcome]) > 0
        self.counts.count(attributed)
        return attributed
