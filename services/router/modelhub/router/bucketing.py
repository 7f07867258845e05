"""Sticky bucketing: a key's bucket is a pure function of (salt, key), and cumulative weight
ranges turn the bucket into a variant.

`bucket(salt, key)` is `h32(salt + NUL + key) % TOTAL`, an integer in [0, TOTAL), where
`h32` is 32-bit FNV-1a followed by murmur3's finalizer. The same function runs in Envoy's
routing filter (deploy/envoy/route_filter/modelhub_route.c), which routes every request;
this module computes it for `ExplainRoute`, the routing table and the tests that check both
agree. Nothing is
stored per key: the same key gets the same variant on every Envoy replica and after
restarts. (Before Envoy routed, the bucket was BLAKE2b-based: the switch reassigned every
key once.)

`Ranges` scales the weights to integers summing to TOTAL by rounding the *cumulative*
weights, so each boundary depends only on the weights before it, and lays the variants
out in the endpoint's order: with weights A=90, B=10, A holds [0, 9000) and B
[9000, 10000). Envoy's weighted clusters, keyed by the bucket header, pick by the same
cumulative ranges over the same integer weights.

What a weight change moves, and what it does not:

* Two variants. 90/10 → 80/20 moves the boundary from 9000 to 8000: exactly the keys with a
  bucket in [8000, 9000) change variant, all of them from A to B (the one that grew); every
  other key stays. The same holds for any pair of neighbouring variants in a longer list
  when the weight moves between those two only (the other boundaries do not move).
* Three or more variants, weight moved between two variants that are *not* neighbours:
  every boundary between them shifts, so keys also move between variants whose weights did
  not change. Keep the variants that trade traffic next to each other (a canary directly
  after the variant it takes traffic from), or move the weight in two steps.
* Weights are shares of their sum: keep the total constant when adding a variant.
* Changing the salt reshuffles every key (a new experiment).
* A share below 1/TOTAL (0.01 %) rounds to an empty range.

Shadow sampling uses an independent hash per shadow (`sample_bucket`), so whether a key is
mirrored says nothing about which variant serves it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

TOTAL = 10_000  # buckets; Envoy's weighted clusters total exactly this

_MASK = 0xFFFFFFFF


def h32(data: bytes) -> int:
    """FNV-1a (32-bit) of `data`, then murmur3's fmix32: uniform enough for bucketing and
    cheap anywhere (Envoy's routing filter, deploy/envoy/route_filter/modelhub_route.c,
    implements it too)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 16777619) & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def bucket(salt: str, key: str) -> int:
    """The key's bucket in [0, TOTAL). Pure: same inputs, same answer, in any process
    (Python or Envoy) on any machine."""
    return h32(salt.encode() + b"\0" + key.encode()) % TOTAL


def sample_bucket(salt: str, shadow: str, key: str) -> int:
    """An independent bucket in [0, TOTAL) for sampling `key` into shadow `shadow`: a key is
    mirrored when this is below the shadow's threshold (`threshold(rate)`), so a user is
    always or never mirrored, independently of the variant that serves them."""
    return h32(b"shadow\0" + salt.encode() + b"\0" + shadow.encode() + b"\0" + key.encode()) % TOTAL


def threshold(rate: float) -> int:
    """Sample buckets below this are mirrored: `rate` of TOTAL, rounded."""
    return max(0, min(TOTAL, round(rate * TOTAL)))


def key_hash(salt: str, key: str) -> str:
    """A short, stable, non-reversible identifier of a key for events (never the key)."""
    return format(h32(b"event\0" + salt.encode() + b"\0" + key.encode()), "08x")


@dataclass(frozen=True, slots=True)
class Range:
    """The bucket range [lower, upper) of one variant."""

    lower: int
    upper: int

    @property
    def width(self) -> int:
        return self.upper - self.lower

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.lower <= value < self.upper


def scaled(weights: Sequence[float]) -> list[int]:
    """Integer weights summing to TOTAL, from rounding the cumulative weights (exactly, with
    fractions): a boundary moves only when the weights before it change."""
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and non-negative, got {list(weights)}")
    total = sum(Fraction(w) for w in weights)
    if total <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    out: list[int] = []
    running = Fraction(0)
    previous = 0
    for weight in weights:
        running += Fraction(weight)
        boundary = int(running * TOTAL / total + Fraction(1, 2))
        out.append(boundary - previous)
        previous = boundary
    return out


class Ranges:
    """Cumulative integer ranges over [0, TOTAL) for weights given in variant order.

    Weights must be non-negative, finite, with a positive sum (the registry enforces it). A
    weight of 0 gets an empty range and is never picked.
    """

    __slots__ = ("_bounds", "ranges", "weights")

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = scaled(weights)
        ranges: list[Range] = []
        lower = 0
        for weight in self.weights:
            ranges.append(Range(lower, lower + weight))
            lower += weight
        self.ranges: tuple[Range, ...] = tuple(ranges)
        self._bounds = [r.upper for r in ranges]

    def pick(self, u: int) -> int:
        """Index of the variant whose range holds bucket `u` (in [0, TOTAL))."""
        return bisect.bisect_right(self._bounds, u % TOTAL)
