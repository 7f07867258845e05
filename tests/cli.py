"""Running the `modelhub` command line as a user does: a subprocess of this Python."""

from __future__ import annotations

import asyncio
import sys


async def run_cli(*args: str) -> tuple[int, str, str]:
    """`python -m modelhub.cli ARGS…`: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelhub.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
