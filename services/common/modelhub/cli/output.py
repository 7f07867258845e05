"""What the `modelhub` command prints: tables and `key  value` blocks for people, JSON for
scripts (`--json`), written so that a closed pipe (`modelhub models list | head -1`) ends
the command quietly.

JSON is protobuf's JSON mapping with the proto field names, except that 64-bit integers
are JSON numbers, not strings, whenever their magnitude is at most 2**53 - 1 (every JSON
parser reads those exactly); larger ones stay strings, as the mapping writes them. Both
forms read back with `apply`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

SAFE_INTEGER = 2**53 - 1
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_INT64_WRAPPERS = {"google.protobuf.Int64Value", "google.protobuf.UInt64Value"}


def _integer(value: Any) -> Any:
    number = int(value)
    return number if abs(number) <= SAFE_INTEGER else value


def _single(field: FieldDescriptor, value: Any) -> Any:
    if field.type in _INT64_TYPES:
        return _integer(value)
    message = field.message_type
    if message is None:
        return value
    if message.full_name in _INT64_WRAPPERS:
        return _integer(value)
    if isinstance(value, dict):
        _numbers(message, value)
    return value


def _numbers(descriptor: Descriptor, data: dict[str, Any]) -> None:
    """64-bit integers of `data` (MessageToDict of a `descriptor` message) as numbers."""
    if descriptor.full_name.startswith("google.protobuf."):
        return  # well-known types have their own JSON forms
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            data[field.name] = {k: _single(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            data[field.name] = [_single(field, v) for v in value]
        else:
            data[field.name] = _single(field, value)


def message_dict(message: Message) -> dict[str, Any]:
    """`message` as JSON-ready data (see the module docstring)."""
    data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _numbers(cast(Descriptor, message.DESCRIPTOR), data)
    return data


def dumps(data: Any) -> str:
    """Indented JSON of data from `message_dict` (or plain Python values)."""
    return json.dumps(data, indent=2, ensure_ascii=False)


@dataclass
class Output:
    """A command's result: `text` for people, `data` for `--json` (None: text only)."""

    text: str
    data: Any = None

    @classmethod
    def of(cls, message: Message, text: str) -> Output:
        return cls(text, message_dict(message))

    @classmethod
    def of_list(cls, messages: Iterable[Message], text: str) -> Output:
        return cls(text, [message_dict(m) for m in messages])

    def render(self, as_json: bool) -> str:
        if as_json and self.data is not None:
            return dumps(self.data)
        return self.text


def write(text: str, stream: Any = None) -> None:
    """Print a line (flushed: a stream of events shows as it comes). A reader that went
    away raises BrokenPipeError, which `main` turns into a quiet exit."""
    out = sys.stdout if stream is None else stream
    out.write(text + "\n")
    out.flush()


# ---------------------------------------------------------------------------- formatting


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Columns padded to their widest cell, two spaces apart, a header line first."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells
    )


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """`KEY  value` lines (kubectl describe style); pairs whose value is None are left out."""
    shown = [(k, "-" if v in ("", []) else str(v)) for k, v in pairs if v is not None]
    width = max((len(k) for k, _ in shown), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in shown)


def section(title: str, body: str) -> str:
    """A titled block under a `fields` block (a blank line before it)."""
    return f"\n{title}:\n" + "\n".join(f"  {line}" for line in body.splitlines())


def when(stamp: Timestamp) -> str:
    """A timestamp in local time to the second; "-" when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime().astimezone().strftime("%Y-%m-%d %H:%M:%S")


def now() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")


def size(n: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 12.3 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def ms(seconds: float) -> str:
    """Seconds as milliseconds with three significant digits."""
    return f"{seconds * 1000:.3g}"


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"
