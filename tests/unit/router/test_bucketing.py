"""Sticky bucketing: the hash is FNV-1a + murmur3's finalizer exactly (Envoy's routing
filter computes the same one), buckets are pure and uniform, and the integer ranges honour the
weights and move only the boundary between the variants that traded weight."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from modelhub.router import bucketing
from modelhub.router.bucketing import (
    TOTAL,
    Range,
    Ranges,
    bucket,
    h32,
    key_hash,
    sample_bucket,
    scaled,
    threshold,
)

ROUTE_FILTER = (
    Path(__file__).resolve().parents[3] / "deploy" / "envoy" / "route_filter" / "modelhub_route.c"
)
SALT = "3f9c2a7e"
KEYS = [f"user-{i}" for i in range(10_000)]

# ----------------------------------------------------------- reference implementation
# Written from the specifications, separately from the module: FNV-1a 32-bit (offset basis
# 2166136261, prime 16777619) and MurmurHash3's fmix32.

_M32 = 2**32


def ref_fnv1a32(data: bytes) -> int:
    h = 2166136261
    for octet in data:
        h = ((h ^ octet) * 16777619) % _M32
    return h


def ref_fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 2246822507) % _M32
    h ^= h >> 13
    h = (h * 3266489909) % _M32
    h ^= h >> 16
    return h


def ref_h32(data: bytes) -> int:
    return ref_fmix32(ref_fnv1a32(data))


def test_reference_matches_published_vectors() -> None:
    # FNV-1a 32 (the FNV authors' test suite).
    assert ref_fnv1a32(b"") == 0x811C9DC5
    assert ref_fnv1a32(b"a") == 0xE40C292C
    assert ref_fnv1a32(b"foobar") == 0xBF9CF968
    # MurmurHash3_x86_32 of the empty string is fmix32(seed): seeds 0, 1, 0xffffffff.
    assert ref_fmix32(0) == 0
    assert ref_fmix32(1) == 0x514E28B7
    assert ref_fmix32(0xFFFFFFFF) == 0x81F16F39


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0xAB3E7C0B),
        (b"a", 0x1A80B1B3),
        (b"foobar", 0x0C0DA6DC),
        (b"salt-1\x00user-1", 0xDC69E007),
        ("ключ".encode(), 0x9AA1B562),
    ],
)
def test_h32_known_answers(data: bytes, expected: int) -> None:
    assert ref_h32(data) == expected
    assert h32(data) == expected


def test_h32_agrees_with_the_reference_on_random_bytes() -> None:
    rng = random.Random(20261130)
    for _ in range(1000):
        data = rng.randbytes(rng.randrange(0, 64))
        assert h32(data) == ref_h32(data), data.hex()


def test_bucket_sample_bucket_and_key_hash_are_the_documented_functions() -> None:
    """The exact byte layouts Envoy's routing filter hashes: a change here reassigns keys and
    breaks agreement with Envoy."""
    rng = random.Random(7)
    for _ in range(200):
        salt = rng.choice(["", "s", SALT, "ünï"])
        key = str(rng.getrandbits(40))
        assert bucket(salt, key) == ref_h32(salt.encode() + b"\0" + key.encode()) % TOTAL
        assert (
            sample_bucket(salt, "next", key)
            == ref_h32(b"shadow\0" + salt.encode() + b"\0next\0" + key.encode()) % TOTAL
        )
        assert key_hash(salt, key) == format(
            ref_h32(b"event\0" + salt.encode() + b"\0" + key.encode()), "08x"
        )
    assert bucket("salt-1", "user-1") == 6151
    assert bucket("checkout-salt", "42") == 2675


def test_the_routing_filter_uses_the_same_constants_and_layouts() -> None:
    """A cheap drift check of the second implementation (Envoy runs it; the service tests
    compare its routing with `bucket` over 10,000 keys)."""
    source = ROUTE_FILTER.read_text(encoding="utf-8").lower()
    for literal in ("0x811c9dc5u", "16777619u", "0x85ebca6bu", "0xc2b2ae35u"):
        assert literal in source
    shifts = re.findall(r"h \^= h >> (\d+);", source)
    assert shifts == ["16", "13", "16"]
    # bucket: salt 0 key; event: "event" 0 salt 0 key; shadow: "shadow" 0 salt 0 name 0 key.
    compact = re.sub(r"\s+", " ", source)
    assert (
        "h32_update(&h, salt, salt_length); h32_sep(&h); h32_update(&h, key, key_length); "
        "bucket = h32_final(&h) % total;" in compact
    )
    assert 'h32_update(&h, "event", 5); h32_sep(&h); h32_update(&h, salt, salt_length);' in compact
    assert (
        'h32_update(&h, "shadow", 6); h32_sep(&h); h32_update(&h, salt, salt_length); '
        "h32_sep(&h); h32_update(&h, name, strlen(name)); h32_sep(&h); "
        "h32_update(&h, key, key_length); sampled = h32_final(&h) % total < threshold;"
    ) in compact


# ---------------------------------------------------------------------------- buckets


def test_bucket_is_pure_and_an_integer_in_range() -> None:
    values = [bucket(SALT, key) for key in KEYS[:2000]]
    assert values == [bucket(SALT, key) for key in KEYS[:2000]]
    assert all(isinstance(v, int) and 0 <= v < TOTAL for v in values)


def test_bucket_is_uniform_over_ten_equal_variants() -> None:
    keys = [f"k{i}" for i in range(100_000)]
    ranges = Ranges([1] * 10)
    counts = [0] * 10
    for key in keys:
        counts[ranges.pick(bucket(SALT, key))] += 1
    assert all(abs(c / len(keys) - 0.1) <= 0.015 for c in counts), counts


def test_salt_and_key_are_not_ambiguous() -> None:
    assert bucket("ab", "c") != bucket("a", "bc")
    assert bucket(SALT, "42") != bucket("other-salt", "42")


@pytest.mark.parametrize("weights", [[50, 50], [90, 10], [70, 20, 10], [1, 99]])
def test_split_matches_weights_within_two_points(weights: list[float]) -> None:
    ranges = Ranges(weights)
    picks = [ranges.pick(bucket(SALT, key)) for key in KEYS]
    total = sum(weights)
    for index, weight in enumerate(weights):
        share = picks.count(index) / len(picks)
        assert abs(share - weight / total) <= 0.02, (index, share)


# ----------------------------------------------------------------------------- ranges


def assign(weights: list[float], keys: list[str] = KEYS) -> list[int]:
    ranges = Ranges(weights)
    return [ranges.pick(bucket(SALT, key)) for key in keys]


def boundaries(weights: list[float]) -> list[int]:
    return [r.upper for r in Ranges(weights).ranges]


def random_weights(rng: random.Random) -> list[float]:
    n = rng.randrange(1, 8)
    weights: list[float] = [
        rng.choice([0, 0.0001, rng.randrange(1, 100), rng.random() * 1000, 1e-6]) for _ in range(n)
    ]
    if sum(weights) <= 0:
        weights[0] = 1
    return weights


def test_documented_layout() -> None:
    ranges = Ranges([90, 10])
    assert ranges.weights == [9000, 1000]
    assert ranges.ranges == (Range(0, 9000), Range(9000, TOTAL))
    assert [ranges.pick(u) for u in (0, 8999, 9000, TOTAL - 1)] == [0, 0, 1, 1]
    assert 8999 in ranges.ranges[0] and 9000 not in ranges.ranges[0]
    assert ranges.ranges[1].width == 1000


def test_scaled_sums_to_total_and_ranges_tile_the_buckets() -> None:
    rng = random.Random(1)
    for _ in range(500):
        weights = random_weights(rng)
        integers = scaled(weights)
        assert sum(integers) == TOTAL, weights
        assert all(w >= 0 for w in integers)
        ranges = Ranges(weights).ranges
        assert ranges[0].lower == 0 and ranges[-1].upper == TOTAL
        for left, right in itertools.pairwise(ranges):
            assert left.upper == right.lower
    assert scaled([1, 1, 1]) == [3333, 3334, 3333]  # thirds: no bucket left uncovered
    assert Ranges([1, 1, 1]).pick(TOTAL - 1) == 2


def test_each_boundary_depends_only_on_the_weights_before_it() -> None:
    """Moving weight between neighbours i and i+1 (same total) moves boundary i only, and
    in the direction of the variant that shrank."""
    rng = random.Random(2)
    checked = 0
    for _ in range(1000):
        weights = random_weights(rng)
        if len(weights) < 2:
            continue
        i = rng.randrange(len(weights) - 1)
        delta = weights[i + 1] * rng.random()
        moved = list(weights)
        moved[i] += delta
        moved[i + 1] -= delta
        before, after = boundaries(weights), boundaries(moved)
        assert [b for j, b in enumerate(before) if j != i] == [
            a for j, a in enumerate(after) if j != i
        ], (weights, moved)
        assert after[i] >= before[i]
        checked += 1
    assert checked > 500


def test_weight_change_moves_exactly_the_moved_range_toward_the_grown_variant() -> None:
    before = assign([90, 10])
    after = assign([80, 20])
    moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert all(before[i] == 0 and after[i] == 1 for i in moved)
    in_range = [i for i, key in enumerate(KEYS) if 8000 <= bucket(SALT, key) < 9000]
    assert moved == in_range
    assert 0.08 <= len(moved) / len(KEYS) <= 0.12


def test_neighbours_trading_weight_leave_other_variants_alone() -> None:
    before = assign([50, 30, 20])
    after = assign([50, 20, 30])
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert moved and set(moved) == {(1, 2)}


def test_documented_limit_non_neighbours_shift_the_middle_range() -> None:
    before = assign([50, 25, 25])
    after = assign([40, 25, 35])
    moved = {(b, a) for b, a in zip(before, after, strict=True) if b != a}
    assert moved == {(0, 1), (1, 2)}


def test_zero_weights_get_empty_ranges_and_are_never_picked() -> None:
    ranges = Ranges([0, 50, 0, 50, 0])
    assert [r.width for r in ranges.ranges] == [0, 5000, 0, 5000, 0]
    assert {ranges.pick(u) for u in range(TOTAL)} == {1, 3}
    assert ranges.pick(0) == 1
    assert ranges.pick(5000) == 3
    assert ranges.pick(TOTAL - 1) == 3
    # A share below one bucket rounds to an empty range too.
    assert scaled([1e-9, 1]) == [0, TOTAL]


@pytest.mark.parametrize(
    "weights",
    [
        [],
        [0, 0],
        [-1, 2],
        [1, -0.5],
        [float("nan"), 1],
        [float("inf"), 1],
    ],
)
def test_invalid_weights_raise_value_error(weights: list[float]) -> None:
    with pytest.raises(ValueError, match=r"weights|NaN"):
        Ranges(weights)


# ---------------------------------------------------------------------------- shadows


def test_threshold_rounds_and_clamps() -> None:
    assert threshold(0) == 0
    assert threshold(0.1) == 1000
    assert threshold(0.00004) == 0
    assert threshold(1) == TOTAL
    assert threshold(1.5) == TOTAL
    assert threshold(-1) == 0


def test_shadow_sampling_is_per_key_and_independent_of_the_variant() -> None:
    limit = threshold(0.3)
    sampled = [sample_bucket(SALT, "shadow", key) < limit for key in KEYS]
    assert sampled == [sample_bucket(SALT, "shadow", key) < limit for key in KEYS]
    assert abs(sum(sampled) / len(KEYS) - 0.3) <= 0.02
    variants = assign([50, 50])
    for variant in (0, 1):
        mine = [s for s, v in zip(sampled, variants, strict=True) if v == variant]
        assert abs(sum(mine) / len(mine) - 0.3) <= 0.03
    other = [sample_bucket(SALT, "other", key) < limit for key in KEYS]
    assert sampled != other


def test_key_hash_is_stable_and_does_not_reveal_the_key() -> None:
    assert key_hash(SALT, "42") == key_hash(SALT, "42")
    assert key_hash(SALT, "42") != key_hash(SALT, "43")
    assert key_hash(SALT, "42") != key_hash("other", "42")
    assert re.fullmatch(r"[0-9a-f]{8}", key_hash(SALT, "42"))
    assert bucketing.TOTAL == 10_000
