"""Shadow mirroring: bounded, never awaited by the caller, failures counted, and outputs
compared."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelhub.router.events import Event
from modelhub.router.mirror import Mirror, MirroredRequest, ShadowAnswer, compare
from modelhub.router.table import Selector, ShadowRoute, ShadowSpec, Target
from tests.unit.router.helpers import endpoint, state, table

# ---------------------------------------------------------------------------- compare


def test_compare_max_abs_diff_and_argmax() -> None:
    primary = {"scores": np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)}
    shadow = {"scores": np.array([[0.3, 0.7], [0.6, 0.4]], np.float32)}
    diff, has_argmax, agree = compare(primary, shadow)  # type: ignore[misc]
    assert diff == pytest.approx(0.2)
    assert has_argmax and agree
    flipped = {"scores": np.array([[0.3, 0.7], [0.4, 0.6]], np.float32)}
    assert compare(primary, flipped)[2] is False  # type: ignore[index]


def test_compare_regression_outputs_have_no_argmax() -> None:
    result = compare({"y": np.array([1.0, 2.0])}, {"y": np.array([1.5, 2.0])})
    assert result == (0.5, False, False)


def test_compare_mismatches() -> None:
    assert compare({"y": np.zeros((2, 2))}, {"y": np.zeros((2, 3))}) is None
    assert compare({"y": np.zeros(2)}, {"z": np.zeros(2)}) is None


def test_compare_non_finite_values_stay_finite() -> None:
    a = np.array([np.inf, np.nan, 1.0])
    diff, _, _ = compare({"y": a}, {"y": a.copy()})  # type: ignore[misc]
    assert diff == 0.0
    diff, _, _ = compare({"y": a}, {"y": np.array([1.0, np.nan, 1.0])})  # type: ignore[misc]
    assert np.isfinite(diff) and diff > 1e300


def test_compare_strings_and_integers() -> None:
    words = np.array([b"a", b"b"], dtype=object)
    assert compare({"w": words}, {"w": words.copy()}) == (0.0, False, False)
    assert compare({"n": np.array([1, 5])}, {"n": np.array([1, 2])}) == (3.0, False, False)


# ----------------------------------------------------------------------------- mirror


def _shadow(rate: float = 1.0) -> tuple[ShadowRoute, Target]:
    spec = ShadowSpec("s", "m", Selector(version=3), rate)
    route = table(state(endpoint(shadows=(spec,)))).endpoints["e"].shadows[0]
    assert route.target is not None
    return route, route.target


def _decode(data: bytes) -> dict[str, np.ndarray]:
    return {"y": np.frombuffer(data, np.float32)}


def _event() -> Event:
    return Event("r1", 0.0, "endpoints/e", "v0", "m", 1)


async def test_mirror_compares_and_holds_the_event_until_done() -> None:
    shadow, _ = _shadow()
    calls: list[bytes] = []

    async def call(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
        calls.append(data)
        return ShadowAnswer(0, 0.01, np.array([1.0, 3.0], np.float32).tobytes())

    emitted: list[Event] = []
    mirror = Mirror(call, _decode, queue_size=4, concurrency=1, timeout_s=1.0)
    mirror.start()
    primary: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
    tracker = MirroredRequest(_event(), emitted.append, 2)
    assert mirror.submit(shadow, b"request", primary, tracker)
    tracker.done()  # the primary finished…
    primary.set_result(np.array([1.0, 2.0], np.float32).tobytes())
    await mirror.drain(2.0)
    await mirror.close()
    assert calls == [b"request"]
    (event,) = emitted
    (comparison,) = event.shadows
    assert (comparison.shadow, comparison.version, comparison.status_code) == ("s", 3, 0)
    assert comparison.max_abs_diff == 1.0
    assert shadow.counters.sent == 1 and shadow.counters.compared == 1


async def test_full_queue_drops_and_counts_without_blocking() -> None:
    shadow, _ = _shadow()
    release = asyncio.Event()

    async def stuck(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
        await release.wait()
        return ShadowAnswer(0, 0.0, b"")

    emitted: list[Event] = []
    mirror = Mirror(stuck, _decode, queue_size=2, concurrency=1, timeout_s=5.0)
    mirror.start()
    loop = asyncio.get_running_loop()
    results = []
    for _ in range(10):
        tracker = MirroredRequest(_event(), emitted.append, 1)
        results.append(mirror.submit(shadow, b"r", loop.create_future(), tracker))
    await asyncio.sleep(0)
    # One in flight, two queued at most; the others dropped at once, events released.
    assert results.count(True) <= 3
    assert shadow.counters.dropped == results.count(False) >= 7
    assert len(emitted) == shadow.counters.dropped
    release.set()
    await mirror.close()


async def test_failures_and_timeouts_are_counted_and_reported() -> None:
    shadow, _ = _shadow()

    async def failing(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
        return ShadowAnswer(13, 0.002)

    async def slow(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    for call, code in ((failing, 13), (slow, 4)):
        emitted: list[Event] = []
        mirror = Mirror(call, _decode, queue_size=4, concurrency=2, timeout_s=0.05)
        mirror.start()
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        future.set_result(b"\0\0\0\0")
        tracker = MirroredRequest(_event(), emitted.append, 1)
        mirror.submit(shadow, b"r", future, tracker)
        await mirror.drain(2.0)
        await mirror.close()
        (event,) = emitted
        assert [c.status_code for c in event.shadows] == [code]
    assert shadow.counters.failed == 2


async def test_failed_primary_is_not_compared() -> None:
    shadow, _ = _shadow()

    async def call(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
        return ShadowAnswer(0, 0.001, b"\0\0\0\0")

    emitted: list[Event] = []
    mirror = Mirror(call, _decode, queue_size=4, concurrency=1, timeout_s=1.0)
    mirror.start()
    future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    mirror.submit(shadow, b"r", future, MirroredRequest(_event(), emitted.append, 1))
    await mirror.drain(2.0)
    await mirror.close()
    assert emitted[0].shadows == []
    assert shadow.counters.compared == 0 and shadow.counters.failed == 0


async def test_mismatched_outputs_are_counted_not_reported_as_equal() -> None:
    shadow, _ = _shadow()

    async def call(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
        return ShadowAnswer(0, 0.001, b"\0" * 12)  # 3 values vs the primary's 1

    emitted: list[Event] = []
    mirror = Mirror(call, _decode, queue_size=4, concurrency=1, timeout_s=1.0)
    mirror.start()
    future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
    future.set_result(b"\0" * 4)
    mirror.submit(shadow, b"r", future, MirroredRequest(_event(), emitted.append, 1))
    await mirror.drain(2.0)
    await mirror.close()
    assert emitted[0].shadows == []
    assert shadow.counters.mismatched == 1
