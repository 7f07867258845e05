"""The request id index is bounded in size and in time."""

from __future__ import annotations

from modelhub.router.outcomes import OutcomeIndex, Served


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def served(variant: str, t: float) -> Served:
    return Served("endpoints/e", variant, "m", 1, t)


def test_lookup_within_retention() -> None:
    clock = Clock()
    index = OutcomeIndex(10, 60.0, clock)
    index.remember("r1", served("a", clock.now))
    assert index.lookup("r1") == served("a", 1000.0)
    assert index.lookup("unknown") is None
    clock.now += 61
    assert index.lookup("r1") is None
    assert len(index) == 0


def test_first_server_of_an_id_is_kept() -> None:
    clock = Clock()
    index = OutcomeIndex(10, 60.0, clock)
    index.remember("r1", served("a", clock.now))
    index.remember("r1", served("b", clock.now))
    assert index.lookup("r1").variant == "a"  # type: ignore[union-attr]


def test_size_bound_evicts_oldest_first() -> None:
    clock = Clock()
    index = OutcomeIndex(100, 3600.0, clock)
    for i in range(1000):
        index.remember(f"r{i}", served("a", clock.now))
    assert len(index) == 100
    assert index.lookup("r899") is None
    assert index.lookup("r900") is not None
    assert index.evicted_early == 900
