"""Shadow comparisons: how a mirrored model's answers and latency compare with the
primary's, per (endpoint, shadow, model, version), over the same windows as the stats."""

from __future__ import annotations

from dataclasses import dataclass

from modelhub.monitor.events import ShadowResult
from modelhub.monitor.series import IDLE_S, RESCAN_S
from modelhub.monitor.sketch import QuantileSketch
from modelhub.monitor.stats import LatencySummary
from modelhub.monitor.windows import WindowedRings


@dataclass(frozen=True, slots=True)
class ShadowKey:
    endpoint: str
    shadow: str
    model: str
    version: int


class ShadowBucket:
    """Comparisons of one shadow in one time slot."""

    __slots__ = (
        "agreed",
        "argmax_compared",
        "compared",
        "diff",
        "failed",
        "latency_delta_sum",
        "primary_latency",
        "shadow_latency",
    )

    def __init__(self, alpha: float, max_bins: int) -> None:
        self.compared = 0
        self.failed = 0
        self.argmax_compared = 0
        self.agreed = 0
        self.latency_delta_sum = 0.0
        self.diff = QuantileSketch(alpha, max_bins)
        self.shadow_latency = QuantileSketch(alpha, max_bins)
        self.primary_latency = QuantileSketch(alpha, max_bins)

    def add(self, primary_latency_s: float, result: ShadowResult) -> None:
        self.compared += 1
        self.shadow_latency.add(result.latency_s)
        self.primary_latency.add(primary_latency_s)
        self.latency_delta_sum += result.latency_s - primary_latency_s
        if result.status_code != 0:
            # A failed shadow has no output to compare.
            self.failed += 1
            return
        self.diff.add(result.max_abs_diff)
        if result.has_argmax:
            self.argmax_compared += 1
            if result.argmax_agree:
                self.agreed += 1


@dataclass(frozen=True, slots=True)
class ShadowSummary:
    """One shadow's comparison with the primary over a window."""

    shadow: str
    model: str
    version: int
    compared: int
    failed: int
    argmax_compared: int
    agreement_rate: float
    max_abs_diff_p50: float
    max_abs_diff_p99: float
    max_abs_diff_max: float
    shadow_latency: LatencySummary
    primary_latency: LatencySummary
    latency_delta_mean: float


class ShadowTable:
    """At most `max_series` shadow series (idle ones make room)."""

    def __init__(self, max_series: int, alpha: float, max_bins: int) -> None:
        self.max_series = max_series
        self.alpha = alpha
        self.max_bins = max_bins
        self._series: dict[ShadowKey, WindowedRings[ShadowBucket]] = {}
        self._last_scan = -float("inf")

    def __len__(self) -> int:
        return len(self._series)

    def _rings(self, key: ShadowKey, now: float) -> WindowedRings[ShadowBucket] | None:
        rings = self._series.get(key)
        if rings is not None:
            return rings
        if len(self._series) >= self.max_series:
            # Full: look for idle series to drop, but not on every event.
            if now - self._last_scan < RESCAN_S:
                return None
            self._last_scan = now
            idle = [k for k, r in self._series.items() if r.coarse.is_idle(now, IDLE_S)]
            if not idle:
                return None
            for k in idle:
                del self._series[k]
        alpha, max_bins = self.alpha, self.max_bins
        rings = self._series[key] = WindowedRings(lambda: ShadowBucket(alpha, max_bins))
        return rings

    def record(
        self, endpoint: str, primary_latency_s: float, result: ShadowResult, t: float, now: float
    ) -> bool:
        """Count one comparison; False when it could not be kept (cap or too old)."""
        key = ShadowKey(endpoint, result.shadow, result.model, result.version)
        rings = self._rings(key, now)
        if rings is None:
            return False
        coarse = rings.coarse.at(t)
        if coarse is None:
            return False
        coarse.add(primary_latency_s, result)
        fine = rings.fine.at(t)
        if fine is not None:
            fine.add(primary_latency_s, result)
        return True

    def _merged(self, buckets: list[ShadowBucket]) -> ShadowBucket:
        total = ShadowBucket(self.alpha, self.max_bins)
        for bucket in buckets:
            total.compared += bucket.compared
            total.failed += bucket.failed
            total.argmax_compared += bucket.argmax_compared
            total.agreed += bucket.agreed
            total.latency_delta_sum += bucket.latency_delta_sum
            total.diff.merge(bucket.diff)
            total.shadow_latency.merge(bucket.shadow_latency)
            total.primary_latency.merge(bucket.primary_latency)
        return total

    def report(self, endpoint: str, now: float, window_s: int) -> list[ShadowSummary]:
        """Every shadow of `endpoint` with comparisons in the window, by shadow name."""
        out: list[ShadowSummary] = []
        for key in sorted(self._series, key=lambda k: (k.shadow, k.model, k.version)):
            if key.endpoint != endpoint:
                continue
            total = self._merged(self._series[key].collect(now, window_s))
            if total.compared == 0:
                continue
            p50, p99 = total.diff.quantiles((0.5, 0.99)) if total.diff.count else (0.0, 0.0)
            out.append(
                ShadowSummary(
                    shadow=key.shadow,
                    model=key.model,
                    version=key.version,
                    compared=total.compared,
                    failed=total.failed,
                    argmax_compared=total.argmax_compared,
                    agreement_rate=(
                        total.agreed / total.argmax_compared if total.argmax_compared else 0.0
                    ),
                    max_abs_diff_p50=p50,
                    max_abs_diff_p99=p99,
                    max_abs_diff_max=total.diff.max if total.diff.count else 0.0,
                    shadow_latency=LatencySummary.of(total.shadow_latency),
                    primary_latency=LatencySummary.of(total.primary_latency),
                    latency_delta_mean=total.latency_delta_sum / total.compared,
                )
            )
        return out

    def disagreement(self, endpoint: str, shadow: str, now: float, window_s: int) -> float | None:
        """Share of argmax comparisons that disagreed (over every shadow of the endpoint,
        or the one named); None without comparisons."""
        buckets = [
            bucket
            for key, rings in self._series.items()
            if key.endpoint == endpoint and (not shadow or key.shadow == shadow)
            for bucket in rings.collect(now, window_s)
        ]
        compared = sum(b.argmax_compared for b in buckets)
        if not compared:
            return None
        return 1.0 - sum(b.agreed for b in buckets) / compared
