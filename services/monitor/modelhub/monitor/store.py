"""Persistence of the monitor's configuration: alert rules, baselines set through the
monitor, and per-model drift thresholds (SQLAlchemy 2 async; SQLite by default,
PostgreSQL in production), and the payload audit log's records. Live statistics are never
stored: they are rebuilt from the event stream.

Every operation runs in one ORM session inside a transaction of `modelhub.common.db.Database`
(committed, or rolled back with database errors translated into domain errors). The schema
belongs to the Alembic migrations in `migrations/`; the store only checks that the database
is at their head.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from modelhub.common import paging
from modelhub.common.db import Database
from modelhub.common.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ResourceExhaustedError,
)
from modelhub.monitor import migrate
from modelhub.monitor.audit import AuditEntry
from modelhub.monitor.drift import DriftConfig, PartialThresholds
from modelhub.monitor.profile import Baseline, DataProfile
from modelhub.monitor.rules import AlertRule, Comparator
from modelhub.monitor.series import SeriesKey


class Base(DeclarativeBase):
    """ORM base of the monitor's tables (prefixed `monitor_`: a PostgreSQL database may be
    shared with the registry)."""


class RuleRow(Base):
    __tablename__ = "monitor_alert_rules"

    rule_id: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    metric: Mapped[str] = mapped_column(sa.String(64))
    series_model: Mapped[str] = mapped_column(sa.String(80), default="")
    series_version: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    series_endpoint: Mapped[str] = mapped_column(sa.String(80), default="")
    series_variant: Mapped[str] = mapped_column(sa.String(128), default="")
    series_source: Mapped[str] = mapped_column(sa.String(16), default="")
    comparator: Mapped[str] = mapped_column(sa.String(32))
    threshold: Mapped[float] = mapped_column(sa.Double)
    window_seconds: Mapped[int] = mapped_column(sa.Integer)
    for_seconds: Mapped[float] = mapped_column(sa.Double)
    webhook_url: Mapped[str] = mapped_column(sa.String(2048), default="")
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    create_time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    etag: Mapped[str] = mapped_column(sa.String(64))


class BaselineRow(Base):
    __tablename__ = "monitor_baselines"

    model: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    origin: Mapped[str] = mapped_column(sa.String(16))
    profile: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    update_time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class DriftConfigRow(Base):
    __tablename__ = "monitor_drift_configs"

    model: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    psi: Mapped[float] = mapped_column(sa.Double, default=0.0)
    js: Mapped[float] = mapped_column(sa.Double, default=0.0)
    ks: Mapped[float] = mapped_column(sa.Double, default=0.0)
    min_samples: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    p_value: Mapped[float] = mapped_column(sa.Double, default=0.0)
    update_time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AuditRow(Base):
    """One payload audit record (`modelhub.monitor.audit`); times in epoch microseconds
    (exact keyset paging). The payload comes last: SQLite reads its overflow pages only
    when it is selected."""

    __tablename__ = "monitor_audit_records"
    __table_args__ = (
        sa.Index("ix_monitor_audit_records_time", "time_us", "id"),
        sa.Index("ix_monitor_audit_records_endpoint_time", "endpoint", "time_us", "id"),
        sa.Index("ix_monitor_audit_records_request_id", "request_id"),
    )

    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER primary key.
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(sa.String(256))
    time_us: Mapped[int] = mapped_column(sa.BigInteger)
    endpoint: Mapped[str] = mapped_column(sa.String(80))
    variant: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str] = mapped_column(sa.String(80))
    version: Mapped[int] = mapped_column(sa.BigInteger)
    status_code: Mapped[int] = mapped_column(sa.Integer)
    status_message: Mapped[str] = mapped_column(sa.Text)
    latency_s: Mapped[float] = mapped_column(sa.Double)
    trace_id: Mapped[str] = mapped_column(sa.String(32))
    caller: Mapped[str] = mapped_column(sa.String(128))
    caller_role: Mapped[str] = mapped_column(sa.String(16))
    truncated: Mapped[bool] = mapped_column(sa.Boolean)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)


# Every column of an audit record but its payload (listings without payloads).
_AUDIT_SUMMARY = [c for c in AuditRow.__table__.c if c.name != "payload"]
# Rows read per round when deleting the oldest records by bytes.
_AUDIT_DELETE_CHUNK = 500


def _audit_values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "request_id": entry.request_id,
        "time_us": round(entry.time * 1e6),
        "endpoint": entry.endpoint,
        "variant": entry.variant,
        "model": entry.model,
        "version": entry.version,
        "status_code": entry.status_code,
        "status_message": entry.status_message,
        "latency_s": entry.latency_s,
        "trace_id": entry.trace_id,
        "caller": entry.caller,
        "caller_role": entry.caller_role,
        "truncated": entry.truncated,
        "size_bytes": entry.size_bytes,
        "payload": entry.payload,
    }


def _audit_entry(row: Any) -> AuditEntry:
    return AuditEntry(
        request_id=row.request_id,
        time=row.time_us / 1e6,
        endpoint=row.endpoint,
        variant=row.variant,
        model=row.model,
        version=row.version,
        status_code=row.status_code,
        status_message=row.status_message,
        latency_s=row.latency_s,
        trace_id=row.trace_id,
        caller=row.caller,
        caller_role=row.caller_role,
        truncated=row.truncated,
        payload=bytes(getattr(row, "payload", b"") or b""),
        size_bytes=row.size_bytes,
    )


def _to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _to_epoch(value: datetime) -> float:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _rule_from_row(row: RuleRow) -> AlertRule:
    return AlertRule(
        rule_id=row.rule_id,
        display_name=row.display_name,
        metric=row.metric,
        series=SeriesKey(
            model=row.series_model,
            version=row.series_version,
            endpoint=row.series_endpoint,
            variant=row.series_variant,
            source=row.series_source,
        ),
        comparator=Comparator[row.comparator],
        threshold=row.threshold,
        window_s=row.window_seconds,
        for_s=row.for_seconds,
        webhook_url=row.webhook_url,
        disabled=row.disabled,
        create_time=_to_epoch(row.create_time),
        update_time=_to_epoch(row.update_time),
        etag=row.etag,
    )


def _rule_values(rule: AlertRule) -> dict[str, Any]:
    assert rule.comparator is not None, "validated rules have a comparator"
    return {
        "display_name": rule.display_name,
        "metric": rule.metric,
        "series_model": rule.series.model,
        "series_version": rule.series.version,
        "series_endpoint": rule.series.endpoint,
        "series_variant": rule.series.variant,
        "series_source": rule.series.source,
        "comparator": rule.comparator.name,
        "threshold": rule.threshold,
        "window_seconds": rule.window_s,
        "for_seconds": rule.for_s,
        "webhook_url": rule.webhook_url,
        "disabled": rule.disabled,
        "update_time": _to_datetime(rule.update_time),
        "etag": rule.etag,
    }


def new_etag() -> str:
    return uuid.uuid4().hex


# Rule listings' page tokens (`modelhub.common.paging`) carry the last rule id of a page.
_RULE_LISTING = {"listing": "alert_rules"}


def encode_page_token(last_rule_id: str) -> str:
    """An opaque token continuing a rule listing after `last_rule_id`."""
    return paging.encode_token(last_rule_id, _RULE_LISTING)


def decode_page_token(token: str) -> str:
    """The rule id a token continues after ("" for no token); INVALID_ARGUMENT for a token
    not from a rule listing."""
    return paging.decode_str(token, _RULE_LISTING) or ""


class MonitorStore:
    """Rules, baselines, drift configs and audit records in one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def from_url(cls, url: str) -> MonitorStore:
        return cls(Database.from_url(url, "monitor"))

    async def close(self) -> None:
        await self.db.close()

    async def check_schema(self) -> None:
        """Raise SchemaOutdatedError unless the database is at the migrations' head."""
        await migrate.MIGRATIONS.check(self.db.engine)

    # ------------------------------------------------------------------ rules

    async def list_rules(self) -> list[AlertRule]:
        """Every rule, by id (for loading the evaluator)."""
        async with self.db.session(write=False) as session:
            rows = await session.scalars(sa.select(RuleRow).order_by(RuleRow.rule_id))
            return [_rule_from_row(row) for row in rows]

    async def list_rules_page(self, after: str, page_size: int) -> tuple[list[AlertRule], str]:
        """Rules after id `after`, at most `page_size`, and the next page's token."""
        async with self.db.session(write=False) as session:
            query = sa.select(RuleRow).order_by(RuleRow.rule_id).limit(page_size + 1)
            if after:
                query = query.where(RuleRow.rule_id > after)
            rows = list(await session.scalars(query))
        rules = [_rule_from_row(row) for row in rows[:page_size]]
        token = encode_page_token(rules[-1].rule_id) if len(rows) > page_size else ""
        return rules, token

    async def get_rule(self, rule_id: str) -> AlertRule:
        async with self.db.session(write=False) as session:
            row = await session.get(RuleRow, rule_id)
            if row is None:
                raise NotFoundError(
                    f"alert rule rules/{rule_id} not found", metadata={"rule": rule_id}
                )
            return _rule_from_row(row)

    async def create_rule(self, rule: AlertRule, max_rules: int) -> AlertRule:
        """Store a new (validated) rule; ALREADY_EXISTS for a taken id."""
        async with self.db.session() as session:
            count = await session.scalar(sa.select(sa.func.count()).select_from(RuleRow))
            if (count or 0) >= max_rules:
                raise ResourceExhaustedError(
                    f"at most {max_rules} alert rules may exist; delete one first",
                    reason="TOO_MANY_RULES",
                )
            if await session.get(RuleRow, rule.rule_id) is not None:
                raise AlreadyExistsError(
                    f"alert rule {rule.name} already exists", metadata={"rule": rule.rule_id}
                )
            session.add(
                RuleRow(
                    rule_id=rule.rule_id,
                    create_time=_to_datetime(rule.create_time),
                    **_rule_values(rule),
                )
            )
        return rule

    async def update_rule(self, rule: AlertRule, expected_etag: str) -> AlertRule:
        """Replace a rule if its stored etag is still `expected_etag` (else ABORTED)."""
        async with self.db.session() as session:
            result = await session.execute(
                sa.update(RuleRow)
                .where(RuleRow.rule_id == rule.rule_id, RuleRow.etag == expected_etag)
                .values(**_rule_values(rule))
            )
            if getattr(result, "rowcount", 0) == 0:
                if await session.get(RuleRow, rule.rule_id) is None:
                    raise NotFoundError(f"alert rule {rule.name} not found")
                raise ConflictError(
                    f"alert rule {rule.name} changed since etag {expected_etag!r} was read; "
                    "get it again and retry",
                    metadata={"rule": rule.rule_id},
                )
        return rule

    async def delete_rule(self, rule_id: str, etag: str = "") -> None:
        async with self.db.session() as session:
            row = await session.get(RuleRow, rule_id)
            if row is None:
                raise NotFoundError(
                    f"alert rule rules/{rule_id} not found", metadata={"rule": rule_id}
                )
            if etag and row.etag != etag:
                raise ConflictError(
                    f"alert rule rules/{rule_id} changed since etag {etag!r} was read",
                    metadata={"rule": rule_id},
                )
            await session.delete(row)

    # -------------------------------------------------------------- baselines

    async def put_baseline(self, baseline: Baseline) -> Baseline:
        async with self.db.session() as session:
            row = await session.get(BaselineRow, (baseline.model, baseline.version))
            if row is None:
                row = BaselineRow(model=baseline.model, version=baseline.version)
                session.add(row)
            row.origin = baseline.origin
            row.profile = baseline.profile.to_dict()
            row.update_time = _to_datetime(baseline.update_time)
        return baseline

    async def get_baseline(self, model: str, version: int) -> Baseline | None:
        async with self.db.session(write=False) as session:
            row = await session.get(BaselineRow, (model, version))
            if row is None:
                return None
            return Baseline(
                model=row.model,
                version=row.version,
                profile=DataProfile.from_dict(row.profile),
                origin=row.origin,
                update_time=_to_epoch(row.update_time),
            )

    # ---------------------------------------------------------- drift configs

    async def put_drift_config(self, config: DriftConfig) -> DriftConfig:
        async with self.db.session() as session:
            row = await session.get(DriftConfigRow, config.model)
            if row is None:
                row = DriftConfigRow(model=config.model)
                session.add(row)
            t = config.thresholds
            row.psi, row.js, row.ks = t.psi, t.js, t.ks
            row.min_samples, row.p_value = t.min_samples, t.p_value
            row.update_time = _to_datetime(config.update_time)
        return config

    async def get_drift_config(self, model: str) -> DriftConfig | None:
        async with self.db.session(write=False) as session:
            row = await session.get(DriftConfigRow, model)
            if row is None:
                return None
            return DriftConfig(
                model=row.model,
                thresholds=PartialThresholds(
                    psi=row.psi,
                    js=row.js,
                    ks=row.ks,
                    min_samples=row.min_samples,
                    p_value=row.p_value,
                ),
                update_time=_to_epoch(row.update_time),
            )

    # ------------------------------------------------------------- audit records

    async def add_audit(self, entries: list[AuditEntry]) -> None:
        async with self.db.session() as session:
            await session.execute(sa.insert(AuditRow), [_audit_values(e) for e in entries])

    async def audit_bytes(self) -> int:
        """Total `size_bytes` of the stored audit records."""
        async with self.db.session(write=False) as session:
            total = await session.scalar(sa.select(sa.func.sum(AuditRow.size_bytes)))
        return int(total or 0)

    async def list_audit(
        self,
        endpoint: str,
        start_us: int | None,
        end_us: int | None,
        after: tuple[int, int] | None,
        limit: int,
        payloads: bool,
    ) -> list[tuple[tuple[int, int], AuditEntry]]:
        """Records newest first (by time, then insertion), each with its position
        (time_us, id) for keyset paging; `after` continues after such a position."""
        columns = list(AuditRow.__table__.c) if payloads else _AUDIT_SUMMARY
        query = sa.select(*columns).order_by(AuditRow.time_us.desc(), AuditRow.id.desc())
        if endpoint:
            query = query.where(AuditRow.endpoint == endpoint)
        if start_us is not None:
            query = query.where(AuditRow.time_us >= start_us)
        if end_us is not None:
            query = query.where(AuditRow.time_us < end_us)
        if after is not None:
            time_us, row_id = after
            query = query.where(
                sa.or_(
                    AuditRow.time_us < time_us,
                    sa.and_(AuditRow.time_us == time_us, AuditRow.id < row_id),
                )
            )
        async with self.db.session(write=False) as session:
            rows = (await session.execute(query.limit(limit))).all()
        return [((row.time_us, row.id), _audit_entry(row)) for row in rows]

    async def get_audit(self, request_id: str) -> AuditEntry | None:
        """The newest record of a request id."""
        query = (
            sa.select(*AuditRow.__table__.c)
            .where(AuditRow.request_id == request_id)
            .order_by(AuditRow.time_us.desc(), AuditRow.id.desc())
            .limit(1)
        )
        async with self.db.session(write=False) as session:
            row = (await session.execute(query)).first()
        return None if row is None else _audit_entry(row)

    async def delete_audit_before(self, time_us: int) -> tuple[int, int]:
        """Delete the records of requests before `time_us`; (records, bytes) deleted."""
        old = AuditRow.time_us < time_us
        async with self.db.session() as session:
            count, total = (
                await session.execute(
                    sa.select(sa.func.count(), sa.func.sum(AuditRow.size_bytes)).where(old)
                )
            ).one()
            if count:
                await session.execute(sa.delete(AuditRow).where(old))
        return int(count or 0), int(total or 0)

    async def delete_oldest_audit(self, excess: int) -> tuple[int, int]:
        """Delete the oldest records until at least `excess` bytes are freed (or none is
        left); (records, bytes) deleted."""
        count = freed = 0
        async with self.db.session() as session:
            while freed < excess:
                rows = (
                    await session.execute(
                        sa.select(AuditRow.id, AuditRow.size_bytes)
                        .order_by(AuditRow.time_us, AuditRow.id)
                        .limit(_AUDIT_DELETE_CHUNK)
                    )
                ).all()
                if not rows:
                    break
                ids = []
                for row in rows:
                    ids.append(row.id)
                    freed += row.size_bytes
                    if freed >= excess:
                        break
                await session.execute(sa.delete(AuditRow).where(AuditRow.id.in_(ids)))
                count += len(ids)
        return count, freed
