"""Sticky bucketing: a key's bucket is a pure function of (salt, key), and cumulative weight
ranges turn the bucket into a variant.

`bucket(salt, key)` hashes the pair with BLAKE2b and reads the first 8 bytes of the digest
as an unsigned integer divided by 2**64: uniform in [0, 1), the same on every router
replica, after restarts and on every platform (Python's own `hash()` is salted per process
and must never be used here). Nothing is stored per key: there is no session table to
lose or to share.

`Ranges` lays the variants out on [0, 1) in the endpoint's order, each as wide as its share
of the total weight: with weights A=90, B=10, A holds [0, 0.9) and B [0.9, 1).

What a weight change moves, and what it does not:

* Two variants. 90/10 → 80/20 moves the boundary from 0.9 to 0.8: exactly the keys with a
  bucket in [0.8, 0.9) change variant, all of them from A to B (the one that grew); every
  other key stays. The same holds for any pair of neighbouring variants in a longer list
  when the weight moves between those two only (the other boundaries do not move).
* Three or more variants, weight moved between two variants that are *not* neighbours:
  every boundary between them shifts, so keys also move between variants whose weights did
  not change. With A, B, C = 50/25/25 → 40/25/35, B's range slides from [0.5, 0.75) to
  [0.4, 0.65): keys in [0.4, 0.5) go A→B and keys in [0.65, 0.75) go B→C, although B's
  weight stayed. No pure function of (key, current weights) can avoid this for every
  possible change; keep the variants that trade traffic next to each other (a canary
  directly after the variant it takes traffic from), or move the weight in two steps
  through the neighbour.
* Weights are shares of their sum: adding a variant, or changing the total, rescales every
  range. Keep the total constant (e.g. 100) and take the new variant's weight from its
  neighbour, appending it after that neighbour.
* Changing the salt reshuffles every key (a new experiment).

Shadow sampling uses an independent hash per shadow (`sample_bucket`), so whether a key is
mirrored says nothing about which variant serves it.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

_SCALE = 1.0 / 18446744073709551616.0  # 2**-64
_U64 = struct.Struct(">Q")


def _u64(*parts: bytes) -> int:
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        # Length-prefix every part so that ("ab", "c") and ("a", "bc") hash differently.
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return int(_U64.unpack(digest.digest())[0])


def bucket(salt: str, key: str) -> float:
    """hash(salt, key) mapped uniformly into [0, 1). Pure: same inputs, same answer,
    in any process on any machine."""
    return _u64(salt.encode(), key.encode()) * _SCALE


def sample_bucket(salt: str, shadow: str, key: str) -> float:
    """An independent bucket in [0, 1) for sampling `key` into shadow `shadow`: a key is
    mirrored when this is below the shadow's rate, so a user is always or never
    mirrored, independently of the variant that serves them."""
    return _u64(b"shadow", salt.encode(), shadow.encode(), key.encode()) * _SCALE


def key_hash(salt: str, key: str) -> str:
    """A short, stable, non-reversible identifier of a key for events (never the key)."""
    return f"{_u64(b'event', salt.encode(), key.encode()):016x}"


@dataclass(frozen=True, slots=True)
class Range:
    """The bucket range [lower, upper) of one variant."""

    lower: float
    upper: float

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def __contains__(self, value: object) -> bool:
        return isinstance(value, float | int) and self.lower <= value < self.upper


class Ranges:
    """Cumulative ranges over [0, 1) for weights given in variant order.

    Weights must be non-negative with a positive sum (the registry enforces it). A weight
    of 0 gets an empty range and is never picked.
    """

    __slots__ = ("_bounds", "_last", "ranges")

    def __init__(self, weights: Sequence[float]) -> None:
        total = float(sum(weights))
        if not weights or total <= 0 or any(w < 0 for w in weights):
            raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
        ranges: list[Range] = []
        running = 0.0
        for weight in weights:
            lower = running / total
            running += weight
            ranges.append(Range(lower, running / total))
        # Rounding must not leave a gap below 1.0: the last positive range ends at 1.
        last = max(i for i, w in enumerate(weights) if w > 0)
        ranges[last] = Range(ranges[last].lower, 1.0)
        for i in range(last + 1, len(ranges)):
            ranges[i] = Range(1.0, 1.0)
        self.ranges: tuple[Range, ...] = tuple(ranges)
        # Upper bounds, for a binary search; ties (empty ranges) resolve to the first
        # variant whose upper bound exceeds the bucket, which skips empty ranges.
        self._bounds = [r.upper for r in ranges]
        self._last = last

    def pick(self, u: float) -> int:
        """Index of the variant whose range holds `u` (in [0, 1))."""
        index = bisect.bisect_right(self._bounds, u)
        # u < 1.0 always finds a range; clamp defensively for u == 1.0.
        return index if index <= self._last else self._last
