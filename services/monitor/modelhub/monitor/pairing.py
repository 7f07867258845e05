"""Joining shadow answers with their primaries by request id.

Envoy mirrors a sampled request to a shadow variant fire-and-forget; inference reports
both halves separately: the primary (flagged `mirrored`) and the shadow copy (flagged
`shadow`), with the same request id and each with the first row of its first output. They
reach the monitor in any order, in different batches, possibly from different inference
replicas. `ShadowJoiner` keeps the first half of each request id until the other arrives,
then turns the pair into the `ShadowResult` the shadow report aggregates.

Bounded twice: halves wait at most `window_s` (then expire, counted), and beyond
`max_pending` request ids the oldest are evicted (counted). A primary stays after its
first join, for the other shadows of the same request, until it expires; a shadow it
names in `mirrored_to` that has not answered by then counts as a failed comparison
(DEADLINE_EXCEEDED), reported when the next mirrored request or shadow copy arrives.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelhub.common.names import bare_id, is_decimal, model_name
from modelhub.common.routing_headers import split_named_target
from modelhub.monitor.events import Event, ShadowResult

DEADLINE_EXCEEDED = 4  # gRPC code of a shadow that did not answer within the window

# Stands for "no comparable number" where the report needs a finite one.
_HUGE = sys.float_info.max


def compare_outputs(
    primary: Sequence[float], shadow: Sequence[float]
) -> tuple[float, bool, bool] | None:
    """(max absolute difference, has argmax, argmax agrees) of two first output rows, or
    None when they are not comparable (different lengths, or empty).

    Argmax agreement is judged when the row has more than one value (class scores)."""
    if len(primary) != len(shadow) or not primary:
        return None
    diff = 0.0
    for a, b in zip(primary, shadow, strict=True):
        if a == b or (math.isnan(a) and math.isnan(b)):
            continue
        delta = abs(a - b)
        diff = max(diff, delta if math.isfinite(delta) else _HUGE)
    if len(primary) < 2:
        return diff, False, False
    agree = _argmax(primary) == _argmax(shadow)
    return diff, True, agree


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


@dataclass(slots=True)
class _Pending:
    arrived: float
    primary: Event | None = None
    joined: bool = False
    shadows: list[Event] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # shadows that joined


@dataclass(frozen=True, slots=True)
class Joined:
    """A comparison ready for the shadow table: the primary's endpoint, latency and time."""

    endpoint: str
    primary_latency_s: float
    time: float
    result: ShadowResult


@dataclass(slots=True)
class JoinCounters:
    joined: int = 0  # comparisons produced
    mismatched: int = 0  # pairs whose outputs could not be compared (no comparison)
    primary_failed: int = 0  # pairs whose primary failed (nothing to compare with)
    expired_primary: int = 0  # mirrored primaries no shadow joined within the window
    expired_shadow: int = 0  # shadows whose primary never arrived within the window
    evicted: int = 0  # pending request ids dropped early (max_pending reached)
    missing: int = 0  # shadows a primary was mirrored to that never answered (failed)

    def as_dict(self) -> dict[str, int]:
        return {
            "joined": self.joined,
            "mismatched": self.mismatched,
            "primary_failed": self.primary_failed,
            "expired_primary": self.expired_primary,
            "expired_shadow": self.expired_shadow,
            "evicted": self.evicted,
            "missing": self.missing,
        }


class ShadowJoiner:
    """Request id → the half that arrived first, for at most `window_s` seconds."""

    def __init__(self, max_pending: int, window_s: float) -> None:
        self.max_pending = max_pending
        self.window_s = window_s
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self.counters = JoinCounters()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, event: Event, now: float) -> list[Joined]:
        """Take one half (`event.shadow` or `event.mirrored`, with a request id); the
        comparisons it completes."""
        out: list[Joined] = self.expire(now)
        if not event.request_id or not (event.shadow or event.mirrored):
            return out
        pending = self._pending.get(event.request_id)
        if pending is None:
            pending = self._pending[event.request_id] = _Pending(now)
            self._evict(out)
        if event.shadow:
            if pending.primary is None:
                pending.shadows.append(event)
            else:
                self._join(pending, pending.primary, event, out)
        else:
            if pending.primary is None:
                pending.primary = event
            for shadow in pending.shadows:
                self._join(pending, event, shadow, out)
            pending.shadows.clear()
        return out

    def _join(self, pending: _Pending, primary: Event, shadow: Event, out: list[Joined]) -> None:
        pending.joined = True
        name = shadow.variant or bare_id(shadow.model)
        pending.answered.add(name)
        result = ShadowResult(
            shadow=name,
            model=shadow.model,
            version=shadow.version,
            status_code=shadow.status_code,
            latency_s=shadow.latency_s,
        )
        if shadow.status_code == 0:
            if primary.status_code != 0:
                self.counters.primary_failed += 1
                return
            compared = compare_outputs(primary.outputs, shadow.outputs)
            if compared is None:
                self.counters.mismatched += 1
                return
            result.max_abs_diff, result.has_argmax, result.argmax_agree = compared
        self.counters.joined += 1
        out.append(
            Joined(
                primary.endpoint or shadow.endpoint,
                primary.latency_s,
                primary.time or shadow.time,
                result,
            )
        )

    def _drop(self, pending: _Pending, out: list[Joined], *, expired: bool = True) -> None:
        primary = pending.primary
        if expired:
            if primary is not None and not pending.joined:
                self.counters.expired_primary += 1
            self.counters.expired_shadow += len(pending.shadows)
        if primary is None or primary.status_code != 0:
            return
        # Shadows the primary was sent to that never answered: failed comparisons, so a
        # dead shadow shows in the shadow report instead of as silence.
        for expected in primary.mirrored_to:
            named = split_named_target(expected)
            if named is None:
                continue
            name, model, version = named
            if name in pending.answered or not is_decimal(version):
                continue
            self.counters.missing += 1
            result = ShadowResult(
                shadow=name,
                model=model_name(model),
                version=int(version),
                status_code=DEADLINE_EXCEEDED,
                latency_s=self.window_s,
            )
            out.append(Joined(primary.endpoint, primary.latency_s, primary.time, result))

    def expire(self, now: float) -> list[Joined]:
        """Forget halves older than the window (arrival order is time order); the failed
        comparisons of shadows that never answered."""
        out: list[Joined] = []
        horizon = now - self.window_s
        pending = self._pending
        while pending:
            request_id, oldest = next(iter(pending.items()))
            if oldest.arrived >= horizon:
                break
            del pending[request_id]
            self._drop(oldest, out)
        return out

    def _evict(self, out: list[Joined]) -> None:
        while len(self._pending) > self.max_pending:
            _, oldest = self._pending.popitem(last=False)
            if oldest.shadows or not oldest.joined:
                self.counters.evicted += 1
            self._drop(oldest, out, expired=False)
