"""Outcomes (conversions, rewards, labels) reported to the router, for the monitor.

The monitor attributes each outcome to the variant that served the request id: inference
reports every request it serves (with endpoint and variant), so the join happens where
both arrive. The router validates an outcome here and forwards it at once (the monitor
client, `modelhub.common.monitor_sink.MonitorSink`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.events import Outcome

KINDS = ("conversion", "reward", "label")


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
