"""The monitor's payload audit log over a real database (SQLite, and PostgreSQL when it
runs): records are checked and stored, listed newest first by endpoint and time range with
page tokens, fetched by request id, and deleted oldest first past the retention bounds (by
age and by bytes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelhub.common.errors import InvalidArgumentError, NotFoundError
from modelhub.monitor import migrate
from modelhub.monitor.audit import DELETED_AGE, DELETED_BYTES, AuditEntry, AuditLog, entry_size
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore
from tests.unit.monitor.test_store import url  # noqa: F401 - the SQLite/PostgreSQL fixture

T0 = 1_700_000_000.0


@pytest.fixture
async def audit_store(url: str) -> AsyncIterator[MonitorStore]:  # noqa: F811
    await migrate.upgrade(url)
    store = MonitorStore.from_url(url)
    yield store
    await store.close()


async def _log(store: MonitorStore, clock: ManualClock, **settings: object) -> AuditLog:
    log = AuditLog(MonitorSettings(metrics_port=-1, **settings), store, clock)  # type: ignore[arg-type]
    await log.start()
    return log


def _entry(
    request_id: str, time: float, endpoint: str = "endpoints/e", **fields: object
) -> AuditEntry:
    values: dict[str, object] = {
        "variant": "a",
        "model": "models/m",
        "version": 1,
        "caller": "alice",
        "caller_role": "reader",
        "payload": b"p" * 100,
    }
    values.update(fields)
    return AuditEntry(request_id, time, endpoint, **values)  # type: ignore[arg-type]


async def test_valid_records_are_stored_and_invalid_ones_rejected_with_reasons(
    audit_store: MonitorStore,
) -> None:
    clock = ManualClock(T0 + 10)
    log = await _log(audit_store, clock, audit_max_record_bytes=1000)
    result = await log.ingest(
        [
            _entry("ok", T0, status_code=3, status_message="bad shape"),
            _entry("", T0),
            _entry("bad-endpoint", T0, endpoint="endpoints/Not Valid"),
            _entry("future", T0 + 3600),
            _entry("too-big", T0, payload=b"x" * 1001),
            _entry("bad-trace", T0, trace_id="xyz"),
            _entry("bare-endpoint", T0 + 1, endpoint="e"),
        ]
    )
    assert (result.accepted, result.rejected) == (2, 5)
    assert result.reasons == [
        "records[1].request_id: must be 1-256 printable characters",
        "records[2].endpoint: must be `endpoints/{endpoint}`",
        "records[3].time: is more than 300s in the future",
        "records[4].inputs: the record's payload takes 1001 bytes, more than 1000 "
        "(MODELHUB_MONITOR_AUDIT_MAX_RECORD_BYTES)",
        "records[5].trace_id: must be 32 lowercase hex digits",
    ]
    stored = await log.get("ok")
    assert (stored.status_code, stored.status_message, stored.payload) == (
        3,
        "bad shape",
        b"p" * 100,
    )
    bare = await log.get("bare-endpoint")
    assert bare.endpoint == "endpoints/e"
    assert stored.size_bytes == entry_size(stored) > len(stored.payload)
    total = stored.size_bytes + bare.size_bytes
    assert log.stored_bytes == total == await audit_store.audit_bytes()
    with pytest.raises(NotFoundError):
        await log.get("never-seen")
    with pytest.raises(InvalidArgumentError):
        await log.get("")


async def test_listing_by_endpoint_and_time_range_newest_first_with_page_tokens(
    audit_store: MonitorStore,
) -> None:
    clock = ManualClock(T0 + 1000)
    log = await _log(audit_store, clock)
    await log.ingest([_entry(f"e{i}", T0 + i) for i in range(25)])
    await log.ingest([_entry(f"f{i}", T0 + i + 0.5, endpoint="endpoints/f") for i in range(5)])

    everything, token = await log.list("", None, None, 100, "", payloads=False)
    assert token == "" and len(everything) == 30
    assert [e.time for e in everything] == sorted((e.time for e in everything), reverse=True)
    assert all(e.payload == b"" for e in everything)  # summaries

    # Endpoint e, [T0 + 5, T0 + 20), pages of 4: e19 … e5, newest first, nothing twice.
    seen: list[str] = []
    token = ""
    while True:
        page, token = await log.list("e", T0 + 5, T0 + 20, 4, token, payloads=True)
        assert len(page) <= 4 and all(e.payload == b"p" * 100 for e in page)
        seen += [e.request_id for e in page]
        if not token:
            break
    assert seen == [f"e{i}" for i in range(19, 4, -1)]

    _, token = await log.list("endpoints/e", None, None, 2, "", payloads=False)
    with pytest.raises(InvalidArgumentError) as info:  # a token of other filters
        await log.list("endpoints/f", None, None, 2, token, payloads=False)
    assert info.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgumentError):
        await log.list("", T0 + 10, T0, 10, "", payloads=False)
    with pytest.raises(InvalidArgumentError):
        await log.list("Bad Name", None, None, 10, "", payloads=False)
    with pytest.raises(InvalidArgumentError):
        await log.list("", None, None, -1, "", payloads=False)


async def test_get_returns_the_newest_record_of_a_request(audit_store: MonitorStore) -> None:
    log = await _log(audit_store, ManualClock(T0 + 10))
    await log.ingest([_entry("r", T0, variant="a", status_code=14)])
    await log.ingest([_entry("r", T0 + 1, variant="b")])  # Envoy's retry, on the fallback
    record = await log.get("r")
    assert (record.variant, record.status_code) == ("b", 0)


async def test_retention_by_age_deletes_the_old_records(audit_store: MonitorStore) -> None:
    clock = ManualClock(T0)
    log = await _log(audit_store, clock, audit_max_age_s=3600)
    await log.ingest([_entry(f"r{i}", T0 - 3000 + i * 100) for i in range(10)])  # T0-3000…-2100
    clock.advance(1200)  # r0…r5 are now more than an hour old (the oldest ones)
    assert await log.enforce_retention() == (6, 0)
    left, _ = await log.list("", None, None, 100, "", payloads=False)
    assert sorted(e.request_id for e in left) == ["r6", "r7", "r8", "r9"]
    assert log.deleted[DELETED_AGE] == 6
    assert log.stored_bytes == await audit_store.audit_bytes()
    # A record already past the retention is refused when it arrives.
    result = await log.ingest([_entry("late", clock() - 4000)])
    assert result.rejected == 1 and "older than the retention" in result.reasons[0]


async def test_retention_by_bytes_deletes_the_oldest_first_on_insert(
    audit_store: MonitorStore,
) -> None:
    size = entry_size(_entry("r00", T0))
    log = await _log(audit_store, ManualClock(T0 + 100), audit_max_bytes=10 * size)
    # Arrival order differs from time order: retention goes by the requests' time.
    await log.ingest([_entry(f"r{i:02}", T0 + i) for i in (5, 1, 7, 3, 9, 0, 2, 4, 6, 8)])
    assert log.deleted[DELETED_BYTES] == 0 and log.stored_bytes == 10 * size
    await log.ingest([_entry(f"r{i:02}", T0 + i) for i in (10, 11, 12)])
    left, _ = await log.list("", None, None, 100, "", payloads=False)
    assert sorted(e.request_id for e in left) == [f"r{i:02}" for i in range(3, 13)]
    assert log.deleted[DELETED_BYTES] == 3
    assert log.stored_bytes == 10 * size == await audit_store.audit_bytes()


async def test_periodic_retention_recounts_what_other_replicas_stored(
    audit_store: MonitorStore,
) -> None:
    size = entry_size(_entry("r0", T0))
    clock = ManualClock(T0 + 100)
    log = await _log(audit_store, clock, audit_max_bytes=4 * size)
    other = await _log(audit_store, clock, audit_max_bytes=4 * size)  # shares the database
    await log.ingest([_entry("r0", T0), _entry("r1", T0 + 1)])
    await other.ingest([_entry("r2", T0 + 2), _entry("r3", T0 + 3), _entry("r4", T0 + 4)])
    assert log.stored_bytes == 2 * size  # it has not seen the other replica's records
    assert await log.enforce_retention(recount=True) == (0, 1)
    left, _ = await log.list("", None, None, 100, "", payloads=False)
    assert sorted(e.request_id for e in left) == ["r1", "r2", "r3", "r4"]
