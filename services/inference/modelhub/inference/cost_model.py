"""What the batcher knows about its own model version: how long a batch of b rows takes
(the batch cost curve) and how fast rows arrive. Both are learned online.

When to hold a batch back. The executor is idle and r compatible rows are queued; rows
arrive at λ rows/s and a batch of b rows costs c(b) ≈ α + β·b. Running now finishes the r
rows after c(r); rows arriving in the next Δ seconds then wait for that run and pay a
second fixed cost α in the run after. Waiting Δ instead delays the r queued rows by
Δ + β·λ·Δ but saves each of the λ·Δ newcomers about α − Δ. The total latency gained is

    G(Δ) = λ·Δ·(α − Δ) − r·Δ·(1 + β·λ),

positive only when λ·α > r·(1 + β·λ): when more rows arrive during one fixed cost than
are already waiting. It peaks at Δ* = (α − r·(1 + β·λ)/λ) / 2. The batcher holds for
min(Δ*, what is left of max_queue_delay for the oldest request, the time to fill the
batch) and never when G ≤ 0 — so at low load (λ·α ≪ 1) it never adds latency.

The CPU term. Each run also costs CPU on the core that handles requests: the batcher's
own bookkeeping on the event loop, plus the run itself when it shares that core (one
usable CPU, or a run short enough to execute inline). While that core is busy a fraction
u of the time, work queued behind a run waits for it — u/(1−u) items on average (the
M/M/1 queue length) — so a run avoided saves them its CPU cost c too. The fixed cost in
the rule becomes α + c·u/(1−u): nothing changes on an idle server, and on a saturated one
(closed loop, u → 1) the batcher grows batches up to max_queue_delay, handing the CPU
back to request handling.

Checking that waiting pays. λ is measured over all arrivals, but callers in a closed loop
send their next request only after an answer: while the batcher holds their requests, no
more arrive, whatever λ says. So the batcher also measures what its holds actually
gather — rows arrived per second of holding — and decides with the smaller of that and λ.
Holds that gather nothing stop at once; the measurement relaxes back towards λ over about
a second, so a change of traffic is noticed at the cost of one short hold.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

# Shorter holds are not worth a timer: the event loop's own scheduling is coarser.
MIN_HOLD_S = 50e-6
# Busy fractions are capped so that u/(1−u) stays finite (at most 19).
MAX_BUSY = 0.95


class ArrivalRate:
    """Rows per second as an exponentially decaying count with time constant `tau_s`."""

    __slots__ = ("_count", "_last", "_tau")

    def __init__(self, tau_s: float = 0.5) -> None:
        self._tau = tau_s
        self._count = 0.0
        self._last = 0.0

    def add(self, rows: int, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self._count *= math.exp(-elapsed / self._tau)
            self._last = now
        self._count += rows

    def rate(self, now: float) -> float:
        elapsed = max(0.0, now - self._last)
        return self._count * math.exp(-elapsed / self._tau) / self._tau


class BatchCostCurve:
    """Seconds per run by batch size: a smoothed mean per size observed, and an affine fit
    c(b) = fixed + per_row·b over them (weighted by how often each size ran).

    Sizes seen rarely keep their last estimate (e.g. the warm-up's), so the fit stays
    determined while the traffic runs a single size. With one size only, the fit assumes
    cost proportional to rows (no fixed cost): the conservative guess, which never
    recommends waiting.
    """

    __slots__ = (
        "_count",
        "_dirty",
        "_fixed",
        "_mean",
        "_observed",
        "_per_row",
        "_since_fit",
        "_smoothing",
    )

    REFIT_EVERY = 8

    def __init__(self, max_batch_size: int, smoothing: float = 0.2) -> None:
        size = max(1, max_batch_size) + 1
        self._mean = [0.0] * size
        self._count = [0] * size
        self._smoothing = smoothing
        self._fixed = 0.0
        self._per_row = 0.0
        self._dirty = False
        self._since_fit = 0
        self._observed = False

    def observe(self, rows: int, seconds: float) -> None:
        if rows <= 0 or seconds < 0:
            return
        rows = min(rows, len(self._mean) - 1)
        self._observed = True
        if self._count[rows] == 0:
            self._mean[rows] = seconds
            self._dirty = True  # a new size changes the fit: refit at once
        else:
            self._mean[rows] += self._smoothing * (seconds - self._mean[rows])
        self._count[rows] += 1
        self._since_fit += 1
        if self._since_fit >= self.REFIT_EVERY:
            self._dirty = True

    @property
    def fixed(self) -> float:
        """α: seconds every run costs regardless of its size."""
        self._refit()
        return self._fixed

    @property
    def per_row(self) -> float:
        """β: seconds each row adds."""
        self._refit()
        return self._per_row

    @property
    def observed(self) -> bool:
        """Whether any run was measured yet."""
        return self._observed

    def predict(self, rows: int) -> float:
        """Expected seconds for a batch of `rows` (0 before any observation)."""
        self._refit()
        return self._fixed + self._per_row * rows

    def _refit(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self._since_fit = 0
        sw = sx = sy = sxx = sxy = 0.0
        points = 0
        for size, n in enumerate(self._count):
            if n == 0:
                continue
            w = float(min(n, 32))
            y = self._mean[size]
            sw += w
            sx += w * size
            sy += w * y
            sxx += w * size * size
            sxy += w * size * y
            points += 1
        if points == 0:
            return
        variance = sw * sxx - sx * sx
        if points == 1 or variance <= 0:
            self._fixed, self._per_row = 0.0, sy / sx
            return
        per_row = (sw * sxy - sx * sy) / variance
        fixed = (sy - per_row * sx) / sw
        if per_row < 0:  # noise on a flat curve: all cost is fixed
            self._fixed, self._per_row = sy / sw, 0.0
        elif fixed < 0:  # purely proportional
            self._fixed, self._per_row = 0.0, sxy / sxx
        else:
            self._fixed, self._per_row = fixed, per_row


class CpuLoad:
    """Busy fraction of the CPU request handling runs on, from a CPU-time clock: the
    event loop thread's (`time.thread_time`, called on that thread) or, with a single
    usable core, the whole process's (`time.process_time`). Smoothed over windows of at
    least `window_s`."""

    __slots__ = ("_cpu", "_cpu_clock", "_last", "_last_cpu", "_smoothing", "_window", "value")

    def __init__(
        self,
        cpu_clock: Callable[[], float] = time.thread_time,
        clock: Callable[[], float] = time.perf_counter,
        window_s: float = 0.02,
        smoothing: float = 0.3,
    ) -> None:
        self._cpu_clock = cpu_clock
        self._cpu = clock
        self._window = window_s
        self._smoothing = smoothing
        self._last = clock()
        self._last_cpu = cpu_clock()
        self.value = 0.0

    def sample(self) -> float:
        now = self._cpu()
        elapsed = now - self._last
        if elapsed >= self._window:
            cpu = self._cpu_clock()
            busy = min(1.0, max(0.0, (cpu - self._last_cpu) / elapsed))
            self.value += self._smoothing * (busy - self.value)
            self._last, self._last_cpu = now, cpu
        return self.value


def single_cpu() -> bool:
    """Whether this process may use only one CPU (compute and request handling share it)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    return getaffinity is not None and len(getaffinity(0)) <= 1


def request_cpu_load() -> CpuLoad:
    """A CpuLoad for the request-handling core; call from the event loop thread."""
    return CpuLoad(time.process_time if single_cpu() else time.thread_time)


class CostModel:
    """The batch cost curve, arrival rate and CPU load of one model version, and the hold
    rule."""

    __slots__ = (
        "_hold_rate",
        "_last_hold",
        "_recover_s",
        "arrivals",
        "cpu",
        "curve",
        "overhead",
    )

    def __init__(
        self,
        max_batch_size: int,
        rate_tau_s: float = 0.5,
        cpu: CpuLoad | None = None,
        recover_s: float = 1.0,
    ) -> None:
        self.curve = BatchCostCurve(max_batch_size)
        self.arrivals = ArrivalRate(rate_tau_s)
        self.cpu = cpu or CpuLoad()
        self.overhead = 0.0  # seconds of event-loop CPU per batch besides the run
        self._hold_rate: float | None = None  # rows/s gathered while holding
        self._last_hold = 0.0
        self._recover_s = recover_s

    def observe_overhead(self, seconds: float) -> None:
        self.overhead += 0.1 * (seconds - self.overhead)

    def observe_hold(self, seconds: float, rows_arrived: int, now: float) -> None:
        """What a hold of `seconds` gathered."""
        if seconds <= 0:
            return
        sample = rows_arrived / seconds
        previous = self._hold_rate
        self._hold_rate = sample if previous is None else previous + 0.3 * (sample - previous)
        self._last_hold = now

    def useful_rate(self, now: float) -> float:
        """Rows/s a hold may expect: λ, capped by what holds have gathered lately."""
        rate = self.arrivals.rate(now)
        gathered = self._hold_rate
        if gathered is None or gathered >= rate:
            return rate
        relax = 1.0 - math.exp(-(now - self._last_hold) / self._recover_s)
        return gathered + (rate - gathered) * relax

    def hold_time(
        self,
        queued_rows: int,
        oldest_age_s: float,
        max_delay_s: float,
        max_rows: int,
        now: float,
        shares_cpu: bool = False,
    ) -> float:
        """Seconds to hold the next batch back for more rows (0: run now). `shares_cpu`:
        the run itself executes on the request-handling core. See the module docstring."""
        if queued_rows >= max_rows:
            return 0.0
        budget = max_delay_s - oldest_age_s
        if budget < MIN_HOLD_S:
            return 0.0
        rate = self.useful_rate(now)
        if rate <= 0.0:
            return 0.0
        fixed = self.curve.fixed
        per_row = self.curve.per_row
        busy = min(self.cpu.sample(), MAX_BUSY)
        cpu_cost = self.overhead + (fixed if shares_cpu else 0.0)
        fixed += cpu_cost * busy / (1.0 - busy)
        best = (fixed - queued_rows * (1.0 + per_row * rate) / rate) / 2.0
        if best < MIN_HOLD_S:
            return 0.0
        fill = (max_rows - queued_rows) / rate
        return max(0.0, min(best, budget, fill))
