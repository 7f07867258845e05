"""Epoch seconds ↔ `google.protobuf.Timestamp`, the one conversion every servicer and sink
uses at its edge."""

from __future__ import annotations

import math

from google.protobuf.timestamp_pb2 import Timestamp

_NANOS = 1_000_000_000


def set_timestamp(stamp: Timestamp, epoch_s: float) -> None:
    """Set `stamp` in place to `epoch_s` (rounded to the nanosecond); 0 or a non-finite
    value sets the epoch. (In place: on a hot path a separate Timestamp per message costs
    as much as the rest of the message.)"""
    if not math.isfinite(epoch_s):
        epoch_s = 0.0
    # Split before scaling: epoch seconds × 1e9 exceeds a double's exact integers.
    seconds = math.floor(epoch_s)
    nanos = round((epoch_s - seconds) * 1e9)
    if nanos >= _NANOS:
        seconds, nanos = seconds + 1, nanos - _NANOS
    stamp.seconds = seconds
    stamp.nanos = nanos


def timestamp_of(epoch_s: float) -> Timestamp:
    """`epoch_s` as a Timestamp (rounded to the nanosecond); 0 or a non-finite value is the
    epoch (an empty Timestamp)."""
    stamp = Timestamp()
    set_timestamp(stamp, epoch_s)
    return stamp
