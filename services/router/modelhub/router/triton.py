"""Triton's repository and statistics extensions for the whole deployment (the front door's
answer; docs/data-plane.md): which replicas to ask, and how their answers combine.

Pure functions over what the replicas answered; the servicer (`triton_api`) and the calls
to the replicas and the registry (`triton_service`, `upstream`) live elsewhere.

* Index: one row per (model, version) over every replica. A version a deployment keeps
  loaded should be on every replica: it is READY only when every replica that answered
  serves it. Any other version is loaded on demand where a request needed it: READY when
  some replica serves it.
* Statistics: summed per (model, version): counts and durations add, `last_inference` is
  the latest, batch statistics add per batch size.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.common.names import is_decimal
from modelhub.router.table import RoutingTable

Key = tuple[str, int]  # model, version


class State(enum.Enum):
    """A version's state on one replica (the replica's ModelRepositoryService states)."""

    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"

    @property
    def triton(self) -> str:
        """Triton's name (Triton has no FAILED: a failed load is UNAVAILABLE with a reason)."""
        return "UNAVAILABLE" if self is State.FAILED else self.value


@dataclass(frozen=True, slots=True)
class ReplicaEntry:
    """One row of one replica's repository index."""

    model: str
    version: int
    state: State
    reason: str = ""
    pinned: bool = False  # a deployment keeps it loaded on that replica

    @property
    def key(self) -> Key:
        return self.model, self.version


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One row of the deployment's index, in Triton's terms."""

    model: str
    version: int
    state: str  # READY, LOADING, UNLOADING or UNAVAILABLE
    reason: str = ""


def known_replicas(default_pool: Sequence[str], table: RoutingTable) -> tuple[str, ...]:
    """Every inference replica the router routes to: the default pool, then the pools the
    endpoints' variants and shadows name (each address once, in that order)."""
    seen: dict[str, None] = dict.fromkeys(default_pool)
    for key in sorted(table.endpoints):
        endpoint = table.endpoints[key]
        for variant in endpoint.variants:
            seen.update(dict.fromkeys(variant.spec.pool))
        for shadow in endpoint.shadows:
            seen.update(dict.fromkeys(shadow.spec.pool))
    return tuple(seen)


# Which replica's state describes a version that is not READY as it should be: for a
# deployed version the furthest from serving, for any other the closest to it.
_DEPLOYED_ORDER = (State.FAILED, State.UNLOADING, State.LOADING, State.UNAVAILABLE)
_ON_DEMAND_ORDER = (State.LOADING, State.UNLOADING, State.FAILED, State.UNAVAILABLE)


def _describe(address: str, entry: ReplicaEntry | None) -> str:
    if entry is None:
        return f"{address}: not loaded"
    return f"{address}: {entry.reason or entry.state.value.lower()}"


def _row(
    key: Key,
    found: Mapping[str, ReplicaEntry | None],
    deployed: bool,
) -> IndexRow:
    model, version = key
    ready = [a for a, e in found.items() if e is not None and e.state is State.READY]
    if found and (len(ready) == len(found) or (ready and not deployed)):
        return IndexRow(model, version, State.READY.value)
    order = _DEPLOYED_ORDER if deployed else _ON_DEMAND_ORDER
    rank = {state: i for i, state in enumerate(order)}
    waiting = [(a, e) for a, e in found.items() if e is None or e.state is not State.READY]
    if not waiting:  # no replica answered
        return IndexRow(model, version, State.UNAVAILABLE.value, "no replica answered")
    address, entry = min(
        waiting, key=lambda item: rank[item[1].state] if item[1] is not None else len(order)
    )
    state = entry.state if entry is not None else State.UNAVAILABLE
    if deployed and entry is None:
        state = State.LOADING  # deployed, the replica has not started loading it yet
    reason = _describe(address, entry)
    if ready:
        reason = f"ready on {len(ready)} of {len(found)} replicas; {reason}"
    return IndexRow(model, version, state.triton, reason)


def merge_index(
    answers: Mapping[str, Sequence[ReplicaEntry]],
    deployed: Collection[Key] = (),
    *,
    ready_only: bool = False,
) -> list[IndexRow]:
    """The deployment's index from each answering replica's index (address → rows) and the
    versions the registry's deployments keep loaded, sorted by model and version."""
    by_replica = {address: {e.key: e for e in rows} for address, rows in answers.items()}
    keys: set[Key] = set(deployed)
    pinned: set[Key] = set()
    for rows in answers.values():
        for entry in rows:
            keys.add(entry.key)
            if entry.pinned:
                pinned.add(entry.key)
    merged = []
    for key in sorted(keys):
        found = {address: rows.get(key) for address, rows in by_replica.items()}
        row = _row(key, found, key in pinned or key in deployed)
        if not ready_only or row.state == State.READY.value:
            merged.append(row)
    return merged


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """Where a load through the front door stands."""

    ready: bool
    failure: str = ""  # why a replica failed to load a wanted version ("" if none did)
    waiting: str = ""  # what is not ready yet


def load_progress(
    answers: Mapping[str, Sequence[ReplicaEntry]], wanted: Iterable[Key]
) -> LoadProgress:
    """Whether every wanted version is READY on every replica that answered (and at least
    one answered), or failed to load on one."""
    by_replica = {address: {e.key: e for e in rows} for address, rows in answers.items()}
    if not by_replica:
        return LoadProgress(False, waiting="no replica answered")
    waiting = []
    for key in wanted:
        for address, rows in by_replica.items():
            entry = rows.get(key)
            if entry is not None and entry.state is State.FAILED:
                return LoadProgress(
                    False,
                    failure=f"model {key[0]!r} version {key[1]} failed to load on {address}: "
                    f"{entry.reason or 'no reason given'}",
                )
            if entry is None or entry.state is not State.READY:
                waiting.append(f"version {key[1]} {_describe(address, entry)}")
    return LoadProgress(not waiting, waiting="; ".join(waiting))


# -------------------------------------------------------------------- statistics

# Fields that identify a statistics entry rather than count anything.
_IDENTITY = frozenset({"name", "version", "batch_size"})
_LATEST = frozenset({"last_inference"})
_NUMBERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_DOUBLE,
        FieldDescriptor.TYPE_FLOAT,
    }
)


def _add(total: Message, more: Message) -> None:
    """Add `more` into `total` field by field: numbers add (`last_inference`: the latest),
    messages recursively, `batch_stats` per batch size."""
    for field, value in more.ListFields():
        name = field.name
        if name in _IDENTITY:
            continue
        if field.is_repeated:
            if name == "batch_stats":
                _add_batches(getattr(total, name), value)
            else:
                getattr(total, name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _add(getattr(total, name), value)
        elif field.type in _NUMBERS:
            current = getattr(total, name)
            setattr(total, name, max(current, value) if name in _LATEST else current + value)


def _add_batches(total: Any, more: Iterable[opb.InferBatchStatistics]) -> None:
    """Add batch statistics into the repeated field `total`, per batch size (sorted)."""
    by_size: dict[int, opb.InferBatchStatistics] = {}
    for entry in total:
        by_size[entry.batch_size] = copy = opb.InferBatchStatistics()
        copy.CopyFrom(entry)
    for entry in more:
        existing = by_size.get(entry.batch_size)
        if existing is None:
            by_size[entry.batch_size] = existing = opb.InferBatchStatistics(
                batch_size=entry.batch_size
            )
        _add(existing, entry)
    del total[:]
    total.extend(by_size[size] for size in sorted(by_size))


def _version_order(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if is_decimal(version) else (1, version)


def sum_statistics(answers: Iterable[Iterable[opb.ModelStatistics]]) -> list[opb.ModelStatistics]:
    """Each replica's statistics summed per (model, version), sorted by model and version."""
    totals: dict[tuple[str, str], opb.ModelStatistics] = {}
    for stats in answers:
        for entry in stats:
            key = (entry.name, entry.version)
            total = totals.get(key)
            if total is None:
                totals[key] = total = opb.ModelStatistics(name=entry.name, version=entry.version)
            _add(total, entry)
    return [totals[k] for k in sorted(totals, key=lambda k: (k[0], _version_order(k[1])))]
