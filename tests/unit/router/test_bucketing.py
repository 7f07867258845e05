"""Sticky bucketing: pure and stable, weights honoured, and weight changes that move only
the keys of the range that changed hands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelhub.router.bucketing import Ranges, bucket, key_hash, sample_bucket

ROOT = Path(__file__).resolve().parents[3]
KEYS = [f"user-{i}" for i in range(10_000)]
SALT = "3f9c2a7e"


def assign(weights: list[float], salt: str = SALT, keys: list[str] = KEYS) -> list[int]:
    ranges = Ranges(weights)
    return [ranges.pick(bucket(salt, key)) for key in keys]


def test_bucket_is_uniform_in_unit_interval() -> None:
    values = [bucket(SALT, key) for key in KEYS]
    assert all(0.0 <= v < 1.0 for v in values)
    # Ten deciles, each within ±2 percentage points of 10%.
    counts = [0] * 10
    for v in values:
        counts[int(v * 10)] += 1
    assert all(abs(c / len(values) - 0.1) <= 0.02 for c in counts), counts


def test_salt_and_key_are_not_ambiguous() -> None:
    assert bucket("ab", "c") != bucket("a", "bc")
    assert bucket(SALT, "42") != bucket("other-salt", "42")


@pytest.mark.parametrize("weights", [[50, 50], [90, 10], [70, 20, 10], [1, 99]])
def test_split_matches_weights_within_two_points(weights: list[float]) -> None:
    picks = assign(weights)
    total = sum(weights)
    for index, weight in enumerate(weights):
        share = picks.count(index) / len(picks)
        assert abs(share - weight / total) <= 0.02, (index, share)


def test_same_keys_same_variants_in_another_process() -> None:
    """A fresh interpreter with a different hash seed (Python's own `hash()` would differ)
    assigns every one of 10,000 keys to the same variant: a restarted router, or a replica
    on another machine, agrees without sharing any state."""
    script = (
        "import json, sys\n"
        "from modelhub.router.bucketing import Ranges, bucket\n"
        "keys = [f'user-{i}' for i in range(10000)]\n"
        "ranges = Ranges([50, 30, 20])\n"
        f"print(json.dumps([ranges.pick(bucket({SALT!r}, k)) for k in keys]))\n"
    )
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    here = assign([50, 30, 20])
    assert outputs[0] == here
    assert outputs[1] == here


def test_weight_change_moves_exactly_the_moved_range_toward_the_grown_variant() -> None:
    before = assign([90, 10])
    after = assign([80, 20])
    moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    # Every moved key went from A (0) to B (1)…
    assert all(before[i] == 0 and after[i] == 1 for i in moved)
    # …and the moved keys are exactly those whose bucket lies in [0.8, 0.9).
    in_range = [i for i, key in enumerate(KEYS) if 0.8 <= bucket(SALT, key) < 0.9]
    assert moved == in_range
    assert 0.08 <= len(moved) / len(KEYS) <= 0.12


def test_neighbours_trading_weight_leave_other_variants_alone() -> None:
    """Three variants, weight moved from B to its neighbour C: A's keys never move, and
    every moved key goes B → C."""
    before = assign([50, 30, 20])
    after = assign([50, 20, 30])
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert moved and set(moved) == {(1, 2)}


def test_documented_limit_non_neighbours_shift_the_middle_range() -> None:
    """The documented limit: weight moved from A to C across B shifts B's range, so some
    keys move A → B and some B → C although B's weight did not change."""
    before = assign([50, 25, 25])
    after = assign([40, 25, 35])
    moved = {(b, a) for b, a in zip(before, after, strict=True) if b != a}
    assert moved == {(0, 1), (1, 2)}


def test_zero_weight_variant_is_never_picked() -> None:
    ranges = Ranges([0, 50, 0, 50, 0])
    picks = {ranges.pick(bucket(SALT, key)) for key in KEYS[:2000]}
    assert picks == {1, 3}
    assert ranges.pick(0.0) == 1
    assert ranges.pick(0.5) == 3
    assert ranges.ranges[4].width == 0


def test_ranges_cover_unit_interval_without_gaps() -> None:
    ranges = Ranges([1, 1, 1])  # thirds: rounding must not leave [0.999…, 1) uncovered
    assert ranges.ranges[0].lower == 0.0
    assert ranges.ranges[-1].upper == 1.0
    for left, right in zip(ranges.ranges, ranges.ranges[1:], strict=False):
        assert left.upper == right.lower
    assert ranges.pick(0.9999999999999999) == 2


@pytest.mark.parametrize("weights", [[], [0, 0], [-1, 2]])
def test_invalid_weights_are_refused(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="weights"):
        Ranges(weights)


def test_shadow_sampling_is_per_key_and_independent_of_the_variant() -> None:
    rate = 0.3
    sampled = [sample_bucket(SALT, "shadow", key) < rate for key in KEYS]
    assert abs(sum(sampled) / len(KEYS) - rate) <= 0.02
    # Independent of the variant: each variant of a 50/50 split is sampled at the rate.
    variants = assign([50, 50])
    for variant in (0, 1):
        mine = [s for s, v in zip(sampled, variants, strict=True) if v == variant]
        assert abs(sum(mine) / len(mine) - rate) <= 0.03
    # Another shadow samples other keys.
    other = [sample_bucket(SALT, "other", key) < rate for key in KEYS]
    assert sampled != other


def test_key_hash_is_stable_and_does_not_reveal_the_key() -> None:
    assert key_hash(SALT, "42") == key_hash(SALT, "42")
    assert key_hash(SALT, "42") != key_hash(SALT, "43")
    assert "42" not in key_hash(SALT, "42")
    assert len(key_hash(SALT, "42")) == 16
