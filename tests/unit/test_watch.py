"""The suite's one Watch follower (`modelhub.common.watch`): snapshot then live events,
resume from the last revision after a failure, re-list when the revision is compacted,
never advance inside a snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from modelhub.common.contract import EventType, ResourceKind, WatchEvent
from modelhub.common.errors import RevisionCompactedError, UnavailableError
from modelhub.common.watch import WatchFollower


def _put(revision: int, name: str) -> WatchEvent:
    return WatchEvent(EventType.PUT, revision, ResourceKind.MODEL, name, name.split("/")[1])


class Recorder:
    """A WatchConsumer that writes down what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def begin_snapshot(self) -> None:
        self.calls.append(("begin",))

    def apply(self, event: WatchEvent, live: bool) -> None:
        self.calls.append(("live" if live else "listed", event.type.value, event.name))

    def end_snapshot(self, revision: int) -> None:
        self.calls.append(("end", str(revision)))


class Feed:
    """A scripted Watch feed: each call of `open` plays the next script (events, then an
    exception to raise, or None to stay open)."""

    def __init__(self, *scripts: tuple[list[WatchEvent], BaseException | None]) -> None:
        self.scripts = list(scripts)
        self.opened: list[int] = []

    async def open(self, start_revision: int) -> AsyncIterator[WatchEvent]:
        self.opened.append(start_revision)
        events, error = self.scripts.pop(0) if self.scripts else ([], None)
        for event in events:
            yield event
        if error is not None:
            raise error
        await asyncio.Event().wait()


async def _until(condition: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def test_snapshot_live_resume_and_relist(recorder: Recorder) -> None:
    synced = WatchEvent(EventType.SYNCED, 10)
    feed = Feed(
        # The snapshot: resources at their own revisions, then SYNCED; one live change;
        # then the registry goes away.
        (
            [_put(7, "models/a"), _put(3, "models/b"), synced, _put(11, "models/c")],
            UnavailableError("registry restarting"),
        ),
        # Resumed from 11: a heartbeat, another change, then history compacted.
        (
            [WatchEvent(EventType.PROGRESS, 12), _put(13, "models/d")],
            RevisionCompactedError("compacted", reason="REVISION_COMPACTED"),
        ),
        # Re-listed from 0.
        ([_put(20, "models/d"), WatchEvent(EventType.SYNCED, 21)], None),
    )
    follower = WatchFollower(feed.open, recorder, retry_initial_s=0.001, retry_max_s=0.01)
    follower.start()
    try:
        await _until(lambda: feed.opened == [0, 11, 0] and follower.revision == 21)
    finally:
        await follower.close()
    assert follower.synced.is_set()
    assert (follower.reconnects, follower.relists) == (1, 1)
    assert recorder.calls == [
        ("begin",),
        ("listed", "put", "models/a"),
        ("listed", "put", "models/b"),
        ("end", "10"),
        ("live", "put", "models/c"),
        ("live", "progress", ""),
        ("live", "put", "models/d"),
        ("begin",),
        ("listed", "put", "models/d"),
        ("end", "21"),
    ]


async def test_a_snapshot_cut_short_is_listed_again(recorder: Recorder) -> None:
    feed = Feed(
        ([_put(7, "models/a")], UnavailableError("gone")),  # no SYNCED: revision stays 0
        ([_put(8, "models/a"), WatchEvent(EventType.SYNCED, 8)], None),
    )
    follower = WatchFollower(feed.open, recorder, retry_initial_s=0.001)
    follower.start()
    try:
        await asyncio.wait_for(follower.synced.wait(), 5)
    finally:
        await follower.close()
    assert feed.opened == [0, 0]
    assert recorder.calls.count(("begin",)) == 2 and recorder.calls[-1] == ("end", "8")


async def test_a_failing_consumer_does_not_end_the_follower() -> None:
    class Broken(Recorder):
        def apply(self, event: WatchEvent, live: bool) -> None:
            super().apply(event, live)
            if event.name == "models/bad":
                raise RuntimeError("bug")

    broken = Broken()
    feed = Feed(
        ([WatchEvent(EventType.SYNCED, 1), _put(2, "models/bad")], None),
        ([_put(3, "models/ok")], None),
    )
    follower = WatchFollower(feed.open, broken, retry_initial_s=0.001)
    follower.start()
    try:
        await _until(lambda: ("live", "put", "models/ok") in broken.calls)
    finally:
        await follower.close()
    # The failed event's revision was taken: the follower resumed after it.
    assert feed.opened == [0, 2]
