"""Dataclass ↔ JSON for stored specs and change-feed payloads (typed, no pickle)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import UTC, datetime
from functools import cache
from typing import Any


def to_json(value: Any) -> Any:
    """A JSON-compatible form of dataclasses, enums, datetimes, lists, tuples and dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` from `to_json` output."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_json(options[0], data) if len(options) == 1 else data
    if origin is list:
        (item,) = typing.get_args(tp)
        return [from_json(item, v) for v in data]
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v) for v in data)
        return tuple(from_json(a, v) for a, v in zip(args, data, strict=True))
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: from_json(item, v) for k, v in data.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            known = {f.name for f in dataclasses.fields(tp)}
            return tp(**{k: from_json(hints[k], v) for k, v in data.items() if k in known})
        if issubclass(tp, enum.Enum):
            return tp(data)
        if tp is datetime:
            parsed = datetime.fromisoformat(data)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if tp is float:
            return float(data)
    return data
