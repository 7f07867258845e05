"""Live samples of input features and outputs per model version, for drift detection.

Each version keeps a ring of 1-minute buckets (an hour's worth); in each bucket every
feature has a reservoir (Vitter's algorithm R) of at most `per_bucket` values, so a
bucket is a uniform sample of that minute's values whatever the traffic, and memory is
bounded by versions × features × 61 × per_bucket. Numbers are stored unboxed.
"""

from __future__ import annotations

import random
from array import array
from collections import OrderedDict
from collections.abc import MutableSequence, Sequence
from typing import Any, Literal

from modelhub.monitor.events import Value
from modelhub.monitor.windows import COARSE_SLOTS, COARSE_WIDTH_S, TimeRing

Group = Literal["features", "predictions"]
_IDLE_S = 3600.0


class Reservoir:
    """A uniform sample of at most `cap` of the values offered (algorithm R)."""

    __slots__ = ("seen", "values")

    def __init__(self, values: MutableSequence[Any]) -> None:
        self.values = values
        self.seen = 0

    def offer(self, value: Any, cap: int, rng: random.Random) -> None:
        self.seen += 1
        if len(self.values) < cap:
            self.values.append(value)
            return
        slot = rng.randrange(self.seen)
        if slot < cap:
            self.values[slot] = value


class SampleBucket:
    """One minute of samples of one version: reservoirs by group and feature name."""

    __slots__ = ("categories", "numbers")

    def __init__(self) -> None:
        self.numbers: dict[tuple[str, str], Reservoir] = {}
        self.categories: dict[tuple[str, str], Reservoir] = {}


class VersionSamples:
    """The sample ring of one model version."""

    __slots__ = ("names", "ring")

    def __init__(self) -> None:
        self.ring: TimeRing[SampleBucket] = TimeRing(COARSE_WIDTH_S, COARSE_SLOTS, SampleBucket)
        # (group, name) pairs ever sampled, bounded by the store's max_features.
        self.names: set[tuple[str, str]] = set()


class SampleStore:
    """Samples of at most `max_versions` versions and `max_features` names per version."""

    def __init__(
        self,
        max_versions: int,
        max_features: int,
        per_bucket: int,
        rng: random.Random | None = None,
    ) -> None:
        self.max_versions = max_versions
        self.max_features = max_features
        self.per_bucket = per_bucket
        self._rng = rng or random.Random()
        self._versions: OrderedDict[tuple[str, int], VersionSamples] = OrderedDict()
        # Values not sampled because a cap was reached (names or versions).
        self.refused_values = 0

    def __len__(self) -> int:
        return len(self._versions)

    def _version(self, model: str, version: int, now: float) -> VersionSamples | None:
        key = (model, version)
        samples = self._versions.get(key)
        if samples is not None:
            self._versions.move_to_end(key)
            return samples
        if len(self._versions) >= self.max_versions:
            # Least recently fed first; it only makes room if it has gone quiet.
            oldest_key, oldest = next(iter(self._versions.items()))
            if not oldest.ring.is_idle(now, _IDLE_S):
                return None
            del self._versions[oldest_key]
        samples = self._versions[key] = VersionSamples()
        return samples

    def add(
        self,
        model: str,
        version: int,
        t: float,
        now: float,
        features: Sequence[tuple[str, Value]],
        predictions: Sequence[tuple[str, Value]],
    ) -> None:
        """Offer one event's sampled values."""
        if not features and not predictions:
            return
        samples = self._version(model, version, now)
        bucket = samples.ring.at(t) if samples is not None else None
        if samples is None or bucket is None:
            self.refused_values += len(features) + len(predictions)
            return
        groups: tuple[tuple[Group, Sequence[tuple[str, Value]]], ...] = (
            ("features", features),
            ("predictions", predictions),
        )
        for group, values in groups:
            for name, value in values:
                key = (group, name)
                if key not in samples.names:
                    if len(samples.names) >= self.max_features:
                        self.refused_values += 1
                        continue
                    samples.names.add(key)
                if isinstance(value, str):
                    reservoir = bucket.categories.get(key)
                    if reservoir is None:
                        reservoir = bucket.categories[key] = Reservoir([])
                else:
                    reservoir = bucket.numbers.get(key)
                    if reservoir is None:
                        reservoir = bucket.numbers[key] = Reservoir(array("d"))
                reservoir.offer(value, self.per_bucket, self._rng)

    def values(
        self, model: str, version: int, group: str, name: str, now: float, window_s: float
    ) -> tuple[list[float], list[str]]:
        """The numbers and categories sampled for one feature within the window.

        Buckets are uniform samples of their minute; a minute with more traffic than the
        reservoir holds is under-represented relative to a quieter one, which is the price
        of a fixed memory bound (drift scores compare shapes, not volumes).
        """
        samples = self._versions.get((model, version))
        if samples is None:
            return [], []
        numbers: list[float] = []
        categories: list[str] = []
        key = (group, name)
        for bucket in samples.ring.collect(now, window_s):
            reservoir = bucket.numbers.get(key)
            if reservoir is not None:
                numbers.extend(reservoir.values)
            reservoir = bucket.categories.get(key)
            if reservoir is not None:
                categories.extend(reservoir.values)
        return numbers, categories

    def value_count(self) -> int:
        """Values held over every version (for memory checks)."""
        total = 0
        for samples in self._versions.values():
            for bucket in samples.ring.all():
                total += sum(len(r.values) for r in bucket.numbers.values())
                total += sum(len(r.values) for r in bucket.categories.values())
        return total
