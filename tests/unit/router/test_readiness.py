"""The readiness gate keeps a variant on its current version until the new one is ready."""

from __future__ import annotations

import asyncio

from modelhub.router.readiness import ReadinessGate


class Probe:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, pool: object, model: str, version: int) -> bool:
        self.calls.append((model, version))
        return self.answers.pop(0) if self.answers else False


async def test_new_version_waits_until_ready() -> None:
    changed = asyncio.Event()
    probe = Probe([False, False, True])
    gate = ReadinessGate(probe, changed.set, timeout_s=5, interval_s=0.01)
    # A variant the router has not routed yet goes straight to its version.
    assert gate.choose("endpoints/e", "a", "m", 1, "pool", None) == ("m", 1)
    gate.commit({("endpoints/e", "a"): ("m", 1)})
    assert gate.choose("endpoints/e", "a", "m", 1, "pool", None) == ("m", 1)
    # The alias moved to version 2: keep serving 1 while 2 gets ready.
    assert gate.choose("endpoints/e", "a", "m", 2, "pool", None) == ("m", 1)
    assert gate.choose("endpoints/e", "a", "m", 2, "pool", None) == ("m", 1)
    await asyncio.wait_for(changed.wait(), 2)
    assert probe.calls == [("m", 2)] * 3  # one probe loop, not one per rebuild
    assert gate.choose("endpoints/e", "a", "m", 2, "pool", None) == ("m", 2)
    await gate.close()


async def test_a_version_that_never_reports_ready_is_used_after_the_timeout() -> None:
    changed = asyncio.Event()
    gate = ReadinessGate(Probe([]), changed.set, timeout_s=0.1, interval_s=0.01)
    gate.commit({("endpoints/e", "a"): ("m", 1)})
    assert gate.choose("endpoints/e", "a", "m", 2, "pool", None) == ("m", 1)
    await asyncio.wait_for(changed.wait(), 2)
    assert gate.choose("endpoints/e", "a", "m", 2, "pool", None) == ("m", 2)


async def test_readiness_is_per_pool_and_the_gate_can_be_off() -> None:
    gate = ReadinessGate(Probe([True]), lambda: None, timeout_s=5, interval_s=0.01)
    gate.commit({("endpoints/e", "a"): ("m", 1), ("endpoints/e", "b"): ("m", 1)})
    assert gate.choose("endpoints/e", "a", "m", 2, "pool-a", None) == ("m", 1)
    await asyncio.sleep(0.05)
    assert gate.choose("endpoints/e", "a", "m", 2, "pool-a", None) == ("m", 2)
    # Ready on pool-a says nothing about pool-b.
    assert gate.choose("endpoints/e", "b", "m", 2, "pool-b", None) == ("m", 1)
    await gate.close()
    off = ReadinessGate(Probe([]), lambda: None, timeout_s=0)
    off.commit({("endpoints/e", "a"): ("m", 1)})
    assert off.choose("endpoints/e", "a", "m", 2, "pool", None) == ("m", 2)
