"""What a loaded model version really holds in this process, and giving it back.

A version's memory is measured, not guessed from its file: `MemoryMeter.measure` runs the
work that builds its sessions (and warms them up, so that ONNX Runtime's arena already
holds what a batch of `max_batch_size` rows needs) and returns what it added to the C
heap's bytes in use (glibc's `mallinfo2`: `uordblks + hblkhd`, over every thread's heap
and the large blocks it maps). That is what the new sessions' live allocations hold, even
when they reuse memory the process kept from earlier ones. A difference of resident set
sizes is a poor measure of it: glibc keeps the top of each thread's heap once freed, so the
temporary copies a load makes can stay resident (a first load looks twice its size) and
the next load reuses them (it looks nearly free). Without mallinfo2 (not glibc), the
difference of anonymous resident memory (`/proc/self/statm`: resident less shared pages)
is used instead. Sessions on a GPU keep their weights in device memory, which neither
figure sees: the accounting never counts less than the artifact size anyway.

Measurements and releases run one at a time on the meter's own thread, so that two loads
never count each other's memory, and so that sessions are built and freed in one C heap
(glibc gives each thread a heap of its own, and keeps the top of each one once freed).

Freed memory is not always returned to the kernel: glibc keeps freed chunks until asked.
`release_free_memory` asks (`malloc_trim(0)`); it runs before and after every measurement
and after every release, so that an unloaded version's memory leaves the resident set.
Elsewhere than glibc on Linux it does nothing, and what cannot be read counts 0 (the
accounting then falls back to the artifact size).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_STATM = "/proc/self/statm"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(anonymous: bool = False) -> int:
    """This process's resident set size in bytes (0 where /proc is not available);
    `anonymous`: without file-backed pages (shared library code paged in, mapped files),
    which the kernel can drop and read again."""
    try:
        with open(_STATM, "rb") as statm:
            fields = statm.read().split()
        pages = int(fields[1]) - (int(fields[2]) if anonymous else 0)
        return pages * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)  # the process's own symbols: glibc's
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_function("malloc_trim")
if _MALLOC_TRIM is not None:
    _MALLOC_TRIM.argtypes = [ctypes.c_size_t]
    _MALLOC_TRIM.restype = ctypes.c_int
_MALLINFO2 = _libc_function("mallinfo2")  # glibc ≥ 2.33
if _MALLINFO2 is not None:
    _MALLINFO2.argtypes = []
    _MALLINFO2.restype = _MallInfo2


def heap_bytes() -> int:
    """Bytes the C heap has handed out and not taken back, over every thread's heap and
    the blocks it maps (0 without glibc's mallinfo2)."""
    if _MALLINFO2 is None:
        return 0
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


def release_free_memory() -> None:
    """Return the C heap's free memory to the kernel (glibc's `malloc_trim(0)`, which
    trims every thread's heap; ctypes releases the GIL while it runs). Blocking: it can
    take milliseconds on a large heap, so call it from a worker thread."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _footprint() -> tuple[int, int]:
    gc.collect()  # what earlier work left in reference cycles goes now, not mid-measurement
    release_free_memory()
    return resident_bytes(anonymous=True), heap_bytes()


class MemoryMeter:
    """Measures what a piece of work adds to the process's memory, one piece at a time,
    on a thread of its own (see the module docstring)."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-memory")

    def _measure(self, work: Callable[[], T]) -> tuple[T, int]:
        resident, heap = _footprint()
        try:
            result = work()
        finally:
            after_resident, after_heap = _footprint()
        added = after_heap - heap if _MALLINFO2 is not None else after_resident - resident
        return result, max(0, added)

    def _release(self, work: Callable[[], None]) -> int:
        resident = resident_bytes(anonymous=True)
        try:
            work()
        finally:
            after, _ = _footprint()
        return max(0, resident - after)

    async def measure(self, work: Callable[[], T]) -> tuple[T, int]:
        """Run `work` (blocking) on the meter's thread; return its result and the bytes
        it left in use (≥ 0)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._measure, work)

    async def release(self, work: Callable[[], None]) -> int:
        """Run `work` (which drops the last references to what is to be freed) on the
        meter's thread, give the freed memory back to the kernel, and return how much left
        the resident set."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._release, work)

    def close(self) -> None:
        self._thread.shutdown(wait=False)
