"""Waiting for something to happen: poll a condition with a deadline instead of sleeping a
fixed time and asserting (a fixed sleep is either too short on a busy machine or wastes
time on an idle one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0) -> None:
    """Poll `condition` (sync or async) until true; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
