"""Progress bars for long transfers and jobs (artifact push and download, batch scoring),
drawn by `rich` on stderr, and only for a person watching: never when stdout or stderr is
not a terminal, nor with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int], None]

# Smaller transfers take one chunk (1 MiB): a bar would only flash.
MIN_BYTES = 1 << 20


def _ignore(done: int, total: int) -> None:
    return None


def terminal() -> bool:
    """Whether a person is watching: stdout and stderr both terminals."""
    return sys.stdout.isatty() and sys.stderr.isatty()


class Bars:
    """Makes one bar per transfer or job (`bars("pushing model.onnx")` → a `(done, total)`
    callback); one bar shows at a time. Use as a context manager: leaving it stops a bar
    left unfinished (an error midway), so the terminal is left clean."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._live: Any = None  # the rich.progress.Progress on screen

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, label: str, unit: str = "bytes") -> Progress:
        if not self.enabled:
            return _ignore
        state: dict[str, Any] = {}

        def update(done: int, total: int) -> None:
            if total <= 0 or (unit == "bytes" and total < MIN_BYTES):
                return
            if "task" not in state:
                state["live"], state["task"] = self._start(label, unit, total)
            state["live"].update(state["task"], completed=done, total=total)
            if done >= total and self._live is state["live"]:
                self.close()

        return update

    def _start(self, label: str, unit: str, total: int) -> tuple[Any, Any]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self.close()
        amount = (
            [DownloadColumn(binary_units=True), TransferSpeedColumn()]
            if unit == "bytes"
            else [MofNCompleteColumn(), TextColumn(unit)]
        )
        live = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            *amount,
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        live.start()
        self._live = live
        return live, live.add_task(label, total=total)
