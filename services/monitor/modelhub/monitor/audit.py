"""The payload audit log, the monitor's part (docs/audit.md): audit records sent by
inference are checked, stored, listed by time range, fetched by request id, and deleted
past the retention bounds.

Retention is by age (`audit_max_age_s`: records of requests older than that go) and by
total bytes (`audit_max_bytes`: past it the oldest records go until the rest fits), both
enforced after every stored batch and every `audit_retention_interval_s` (which also
re-reads the total from the database, so replicas sharing one database converge). The
payloads are opaque bytes here: the edge (`convert`) encodes the records' tensors and
decodes them again when a record is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelhub.common import paging
from modelhub.common.errors import FieldViolation, InvalidArgumentError, NotFoundError
from modelhub.common.names import ENDPOINTS, bare_id, is_resource_id, qualified_name
from modelhub.monitor.clock import Clock
from modelhub.monitor.settings import MonitorSettings

if TYPE_CHECKING:  # the store imports AuditEntry from here
    from modelhub.monitor.store import MonitorStore

log = logging.getLogger("modelhub.monitor.audit")

MAX_REQUEST_ID = 256
MAX_CALLER = 128
MAX_STATUS_MESSAGE = 4096
MAX_BATCH = 1000
MAX_REJECT_REASONS = 20
# What a record's row takes besides its payload and text (indexes included), counted by
# retention by bytes.
ROW_OVERHEAD_BYTES = 256
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ROLES = frozenset({"", "reader", "publisher", "admin"})

# Why records were deleted.
DELETED_AGE = "age"
DELETED_BYTES = "bytes"


@dataclass(slots=True)
class AuditEntry:
    """One stored audit record. `payload` holds the request's inputs and outputs as the
    edge encoded them (empty in listings without payloads)."""

    request_id: str
    time: float  # epoch seconds at arrival
    endpoint: str  # `endpoints/{e}`
    variant: str = ""
    model: str = ""  # `models/{m}`, "" when no version was reached
    version: int = 0
    status_code: int = 0
    status_message: str = ""
    latency_s: float = 0.0
    trace_id: str = ""
    caller: str = ""
    caller_role: str = ""
    truncated: bool = False
    payload: bytes = b""
    size_bytes: int = 0


def entry_size(entry: AuditEntry) -> int:
    """Bytes a stored record counts for retention."""
    return (
        ROW_OVERHEAD_BYTES
        + len(entry.payload)
        + len(entry.request_id)
        + len(entry.status_message)
        + len(entry.caller)
        + len(entry.variant)
    )


@dataclass
class AuditIngestResult:
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, index: int, violations: list[FieldViolation]) -> None:
        self.rejected += 1
        for v in violations:
            if len(self.reasons) < MAX_REJECT_REASONS:
                self.reasons.append(f"records[{index}].{v.field}: {v.description}")


def endpoint_name(value: str, field_name: str = "endpoint") -> str:
    """`endpoints/{e}` from `endpoints/{e}` or a bare id; INVALID_ARGUMENT otherwise."""
    endpoint = bare_id(value, ENDPOINTS)
    if not is_resource_id(endpoint):
        raise InvalidArgumentError(
            f"{field_name} must be `endpoints/{{endpoint}}` (or the endpoint id), got "
            f"{value[:100]!r}",
            field=field_name,
        )
    return qualified_name(endpoint, ENDPOINTS)


def check_request_id(value: str, field_name: str = "request_id") -> str:
    if not 0 < len(value) <= MAX_REQUEST_ID or not value.isprintable():
        raise InvalidArgumentError(
            f"{field_name} must be 1-{MAX_REQUEST_ID} printable characters, got "
            f"{value[:MAX_REQUEST_ID]!r}",
            field=field_name,
        )
    return value


def _field_violations(entry: AuditEntry) -> list[FieldViolation]:
    """What is wrong with a record's names, numbers, trace id and caller."""
    found: list[FieldViolation] = []

    def bad(field_name: str, description: str) -> None:
        found.append(FieldViolation(field_name, description))

    if not is_resource_id(bare_id(entry.endpoint, ENDPOINTS)):
        bad("endpoint", "must be `endpoints/{endpoint}`")
    if entry.variant and not is_resource_id(entry.variant):
        bad("variant", "must be a variant id")
    if entry.model and not is_resource_id(bare_id(entry.model)):
        bad("model", "must be `models/{model}`")
    if entry.version < 0:
        bad("version", "must not be negative")
    if not 0 <= entry.status_code <= 16:
        bad("status_code", "must be a gRPC status code (0-16)")
    if not math.isfinite(entry.latency_s) or entry.latency_s < 0:
        bad("latency_seconds", "must be a finite number >= 0")
    if entry.trace_id and not _TRACE_ID.fullmatch(entry.trace_id):
        bad("trace_id", "must be 32 lowercase hex digits")
    if len(entry.caller) > MAX_CALLER:
        bad("caller", f"is longer than {MAX_CALLER} characters")
    if entry.caller_role not in _ROLES:
        bad("caller_role", "must be reader, publisher or admin")
    return found


class AuditLog:
    """The stored audit records and their retention."""

    def __init__(self, settings: MonitorSettings, store: MonitorStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.max_age_s = settings.audit_max_age_s
        self.max_bytes = settings.audit_max_bytes
        self.max_record_bytes = settings.audit_max_record_bytes
        # Bytes stored, as last read from the database and updated by what this replica
        # stored and deleted since.
        self.stored_bytes = 0
        self.stored = 0
        self.rejected = 0
        self.deleted: dict[str, int] = {DELETED_AGE: 0, DELETED_BYTES: 0}
        self._retention = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.stored_bytes = await self.store.audit_bytes()

    # ------------------------------------------------------------------ ingest

    def _violations(self, entry: AuditEntry, now: float) -> list[FieldViolation]:
        found: list[FieldViolation] = []
        if not 0 < len(entry.request_id) <= MAX_REQUEST_ID or not entry.request_id.isprintable():
            found.append(
                FieldViolation("request_id", f"must be 1-{MAX_REQUEST_ID} printable characters")
            )
        time_problem = self._time_problem(entry.time, now)
        if time_problem is not None:
            found.append(FieldViolation("time", time_problem))
        found.extend(_field_violations(entry))
        if len(entry.payload) > self.max_record_bytes:
            found.append(
                FieldViolation(
                    "inputs",
                    f"the record's payload takes {len(entry.payload)} bytes, more than "
                    f"{self.max_record_bytes} (MODELHUB_MONITOR_AUDIT_MAX_RECORD_BYTES)",
                )
            )
        return found

    def _time_problem(self, time: float, now: float) -> str | None:
        """What is wrong with a record's time: missing, in the future (past the allowed
        clock skew) or past the retention; None when nothing is."""
        if not math.isfinite(time) or time <= 0:
            return "is required"
        if time > now + self.settings.max_clock_skew_s:
            return f"is more than {self.settings.max_clock_skew_s:g}s in the future"
        if time < now - self.max_age_s:
            return f"is older than the retention ({self.max_age_s:g}s)"
        return None

    async def ingest(
        self, entries: list[AuditEntry], problems: dict[int, list[FieldViolation]] | None = None
    ) -> AuditIngestResult:
        """Store the valid records of a batch (invalid ones are rejected, with reasons),
        then enforce retention."""
        if len(entries) > MAX_BATCH:
            raise InvalidArgumentError(
                f"at most {MAX_BATCH} records per batch, got {len(entries)}", field="records"
            )
        result = AuditIngestResult()
        now = self.clock()
        valid: list[AuditEntry] = []
        for index, entry in enumerate(entries):
            violations = list((problems or {}).get(index, ())) + self._violations(entry, now)
            if violations:
                result.reject(index, violations)
                continue
            entry.endpoint = f"endpoints/{entry.endpoint.removeprefix('endpoints/')}"
            entry.status_message = entry.status_message[:MAX_STATUS_MESSAGE]
            entry.size_bytes = entry_size(entry)
            valid.append(entry)
        if valid:
            await self.store.add_audit(valid)
            result.accepted = len(valid)
            self.stored += len(valid)
            self.stored_bytes += sum(e.size_bytes for e in valid)
        self.rejected += result.rejected
        if valid:
            await self.enforce_retention()
        return result

    # -------------------------------------------------------------------- reads

    async def list(
        self,
        endpoint: str,
        start: float | None,
        end: float | None,
        page_size: int,
        page_token: str,
        payloads: bool,
    ) -> tuple[list[AuditEntry], str]:
        """Records newest first, at most `page_size`, and the next page's token."""
        if endpoint:
            endpoint = endpoint_name(endpoint)
        if start is not None and end is not None and end < start:
            raise InvalidArgumentError(
                "end_time is before start_time: give a time range that runs forward",
                field="end_time",
            )
        size = paging.page_size(page_size)
        filters = {"endpoint": endpoint, "start": start, "end": end}
        position = paging.decode_token(page_token, filters)
        after: tuple[int, int] | None = None
        if position is not None:
            try:
                after = (int(position[0]), int(position[1]))
            except (TypeError, ValueError, IndexError):
                raise InvalidArgumentError(
                    "page_token is not valid: pass the next_page_token of the previous "
                    "response unchanged",
                    field="page_token",
                ) from None
        rows = await self.store.list_audit(
            endpoint,
            None if start is None else round(start * 1e6),
            None if end is None else round(end * 1e6),
            after,
            size + 1,
            payloads,
        )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = paging.encode_token(list(rows[-1][0]), filters)
        return [entry for _, entry in rows], token

    async def get(self, request_id: str) -> AuditEntry:
        """The newest record of a request; NOT_FOUND when there is none."""
        check_request_id(request_id)
        entry = await self.store.get_audit(request_id)
        if entry is None:
            raise NotFoundError(
                f"no audit record of request {request_id!r}: its endpoint does not audit it "
                "(audit sample_rate), it was not sampled, it was dropped on the way (see "
                "modelhub_inference_audit_records_dropped_total) or retention deleted it",
                reason="AUDIT_RECORD_NOT_FOUND",
                metadata={"request_id": request_id},
            )
        return entry

    # ---------------------------------------------------------------- retention

    async def enforce_retention(self, recount: bool = False) -> tuple[int, int]:
        """Delete records older than the maximum age, then the oldest ones while the total
        exceeds the maximum bytes; (deleted by age, deleted by bytes). `recount` re-reads
        the total from the database first."""
        async with self._retention:
            if recount:
                self.stored_bytes = await self.store.audit_bytes()
            cutoff = round((self.clock() - self.max_age_s) * 1e6)
            aged, freed = await self.store.delete_audit_before(cutoff)
            self.stored_bytes = max(0, self.stored_bytes - freed)
            over = 0
            if self.stored_bytes > self.max_bytes:
                over, freed = await self.store.delete_oldest_audit(
                    self.stored_bytes - self.max_bytes
                )
                self.stored_bytes = max(0, self.stored_bytes - freed)
            self.deleted[DELETED_AGE] += aged
            self.deleted[DELETED_BYTES] += over
        if aged or over:
            log.info(
                "audit retention deleted %d records by age, %d by bytes",
                aged,
                over,
                extra={"fields": {"event": "audit_retention", "age": aged, "bytes": over}},
            )
        return aged, over

    async def run(self, interval_s: float) -> None:
        """Enforce retention every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.enforce_retention(recount=True)
            except Exception:  # keep going: the next pass retries
                log.exception("audit retention failed")

    def start_background(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(self.settings.audit_retention_interval_s)
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
