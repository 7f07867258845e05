"""Payload audit records as inference sends them to the monitor (docs/audit.md).

A record is built on the request path from what the request already holds, and only
bounded work is done there: each tensor keeps at most as many values as the record's size
cap allows (a copy of the first values, never a reference to the whole request), and a
redacted input keeps none. Encoding the values for the wire happens later, in the
pipeline's sender task (`modelhub.common.monitor_sink.AuditSink`).

The memory a record holds (`record_bytes`) is what bounds the audit pipeline's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Bytes one value takes in the encoded record (a `google.protobuf.Value` inside the
# tensor's ListValue): a number 11 (tag, length, tag, 8-byte double), a boolean 4; a
# string its UTF-8 bytes plus up to 6. What the size cap counts.
NUMBER_WIRE_BYTES = 11
BOOL_WIRE_BYTES = 4
STRING_WIRE_OVERHEAD = 6
# A tensor's name, datatype, shape and framing, and a record's fields other than payloads,
# as counted against the cap (generous).
TENSOR_OVERHEAD_BYTES = 128
RECORD_OVERHEAD_BYTES = 1024
# Longest status message kept.
MAX_STATUS_MESSAGE = 1024


@dataclass(slots=True)
class AuditTensor:
    """One input or output: `values` are the first values of the tensor, flattened (all of
    them unless `truncated`); None when `redacted`. `memory` estimates what `values` hold."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | None
    redacted: bool = False
    truncated: bool = False
    memory: int = 0


@dataclass(slots=True)
class AuditRecord:
    """One sampled request of an audited endpoint."""

    request_id: str
    time: float  # epoch seconds at arrival
    endpoint: str  # `endpoints/{e}`
    variant: str
    model: str  # model id, "" when the request never reached a version
    version: int
    status_code: int  # gRPC code, 0 = OK
    status_message: str = ""
    latency_s: float = 0.0
    trace_id: str = ""  # 32 hex digits, "" without a trace context
    caller: str = "anonymous"
    caller_role: str = ""
    inputs: list[AuditTensor] = field(default_factory=list)
    outputs: list[AuditTensor] = field(default_factory=list)
    truncated: bool = False


def value_wire_bytes(datatype: str) -> int:
    """Encoded bytes of one value of a datatype (for BYTES: the overhead of each string)."""
    if datatype == "BOOL":
        return BOOL_WIRE_BYTES
    if datatype == "BYTES":
        return STRING_WIRE_OVERHEAD
    return NUMBER_WIRE_BYTES


def head(array: np.ndarray, budget: int) -> tuple[np.ndarray, bool, int]:
    """The first values of `array`, flattened, that fit in `budget` encoded bytes, as a new
    array (it references nothing of `array`); whether some were left out; and the encoded
    bytes they take. Work and memory are bounded by the budget, not by the array's size."""
    size = int(array.size)
    budget = max(budget, 0)
    if array.dtype.kind == "O":  # BYTES: elements of their own lengths
        kept: list[object] = []
        used = 0
        # reshape(-1) is a view of a contiguous array; `.flat` stops at 32 dimensions.
        for item in array.reshape(-1) if array.flags.c_contiguous else array.flat:
            cost = STRING_WIRE_OVERHEAD + (len(item) if isinstance(item, bytes | str) else 16)
            if used + cost > budget:
                break
            kept.append(item)
            used += cost
        values = np.empty(len(kept), dtype=object)
        values[:] = kept
        return values, len(kept) < size, used
    per_value = BOOL_WIRE_BYTES if array.dtype.kind == "b" else NUMBER_WIRE_BYTES
    count = min(size, budget // per_value)
    if array.flags.c_contiguous:  # a flat view, then a copy of its first values only
        values = array.reshape(-1)[:count].copy()
    else:  # `flat[:n]` copies only those n values
        values = np.asarray(array.flat[:count])
    return values, count < size, count * per_value


def values_memory(values: np.ndarray, encoded: int) -> int:
    """Memory `values` hold, from `head`'s encoded size (strings: an object each)."""
    if values.dtype.kind == "O":
        return encoded + 64 * len(values)
    return int(values.nbytes)


def record_bytes(record: AuditRecord) -> int:
    """Estimated memory a queued record holds (the audit buffer's byte bound counts it)."""
    size = RECORD_OVERHEAD_BYTES + len(record.status_message) + len(record.request_id)
    for tensor in record.inputs:
        size += TENSOR_OVERHEAD_BYTES + tensor.memory
    for tensor in record.outputs:
        size += TENSOR_OVERHEAD_BYTES + tensor.memory
    return size
