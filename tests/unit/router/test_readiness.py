"""The readiness gate keeps a variant on its current version until the new one is ready
on the variant's pool (or the timeout passes)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from modelhub.router.readiness import ReadinessGate
from tests.polling import wait_for

E = "endpoints/e"
POOL = ("a:1", "b:1")


class Probe:
    """A fake `(pool, model, version) -> bool` probe answering from a script."""

    def __init__(self, answers: list[bool], *, block: asyncio.Event | None = None) -> None:
        self.answers = answers
        self.block = block
        self.calls: list[tuple[object, str, int]] = []

    async def __call__(self, pool: object, model: str, version: int) -> bool:
        self.calls.append((pool, model, version))
        if self.block is not None:
            await self.block.wait()
        return self.answers.pop(0) if self.answers else False


def choose(
    gate: ReadinessGate, version: int, pool_key: Hashable = POOL, variant: str = "a"
) -> tuple[str, int]:
    return gate.choose(E, variant, "m", version, pool_key, POOL)


async def test_new_version_waits_until_ready() -> None:
    changed = asyncio.Event()
    probe = Probe([False, False, True])
    gate = ReadinessGate(probe, changed.set, timeout_s=5, interval_s=0.01)
    # A variant the router has not routed yet goes straight to its version.
    assert choose(gate, 1) == ("m", 1)
    assert probe.calls == []
    gate.commit({(E, "a"): ("m", 1)})
    assert choose(gate, 1) == ("m", 1)
    # The alias moved to version 2: keep serving 1 while 2 gets ready.
    assert choose(gate, 2) == ("m", 1)
    assert choose(gate, 2) == ("m", 1)
    await asyncio.wait_for(changed.wait(), 2)
    # One probe loop (not one per rebuild), asking the variant's pool about the new version.
    assert probe.calls == [(POOL, "m", 2)] * 3
    assert choose(gate, 2) == ("m", 2)
    await gate.close()


async def test_a_version_that_never_reports_ready_is_used_after_the_timeout() -> None:
    changed = asyncio.Event()
    now = [100.0]
    probe = Probe([])
    gate = ReadinessGate(probe, changed.set, timeout_s=10, interval_s=0.001, clock=lambda: now[0])
    gate.commit({(E, "a"): ("m", 1)})
    assert choose(gate, 2) == ("m", 1)
    while len(probe.calls) < 3:
        await asyncio.sleep(0.001)
    assert not changed.is_set() and choose(gate, 2) == ("m", 1)
    now[0] += 10  # the deadline passes
    await asyncio.wait_for(changed.wait(), 2)
    assert choose(gate, 2) == ("m", 2)


async def test_readiness_is_per_pool_and_the_gate_can_be_off() -> None:
    gate = ReadinessGate(Probe([True]), lambda: None, timeout_s=5, interval_s=0.01)
    gate.commit({(E, "a"): ("m", 1), (E, "b"): ("m", 1)})
    assert choose(gate, 2, "pool-a") == ("m", 1)
    await wait_for(lambda: choose(gate, 2, "pool-a") == ("m", 2))
    # Ready on pool-a says nothing about pool-b.
    assert choose(gate, 2, "pool-b", variant="b") == ("m", 1)
    await gate.close()
    off = ReadinessGate(Probe([]), lambda: None, timeout_s=0)
    off.commit({(E, "a"): ("m", 1)})
    assert choose(off, 2) == ("m", 2)


async def test_ready_version_is_remembered_for_other_variants_on_the_same_pool() -> None:
    changed = asyncio.Event()
    probe = Probe([True])
    gate = ReadinessGate(probe, changed.set, timeout_s=5, interval_s=0.01)
    gate.commit({(E, "a"): ("m", 1), (E, "b"): ("m", 1)})
    assert choose(gate, 2) == ("m", 1)
    await asyncio.wait_for(changed.wait(), 2)
    assert choose(gate, 2, variant="b") == ("m", 2)
    assert len(probe.calls) == 1


async def test_close_cancels_pending_probes_without_announcing_a_change() -> None:
    changes: list[None] = []
    block = asyncio.Event()
    probe = Probe([True], block=block)
    gate = ReadinessGate(probe, lambda: changes.append(None), timeout_s=5, interval_s=0.01)
    gate.commit({(E, "a"): ("m", 1)})
    assert choose(gate, 2) == ("m", 1)
    await asyncio.sleep(0)
    assert probe.calls == [(POOL, "m", 2)]
    await gate.close()
    block.set()
    await asyncio.sleep(0.02)
    assert changes == []
    assert choose(gate, 1) == ("m", 1)  # the current version needs no probe


async def test_a_probe_that_raises_does_not_hold_the_variant_forever() -> None:
    changed = asyncio.Event()

    async def broken(pool: object, model: str, version: int) -> bool:
        raise RuntimeError("probe failed")

    gate = ReadinessGate(broken, changed.set, timeout_s=0.05, interval_s=0.01)
    gate.commit({(E, "a"): ("m", 1)})
    assert choose(gate, 2) == ("m", 1)
    try:
        await asyncio.wait_for(changed.wait(), 5)
        assert choose(gate, 2) == ("m", 2)
    finally:
        await gate.close()
