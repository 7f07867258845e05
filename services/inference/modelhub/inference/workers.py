"""Several inference server processes on one port (`workers` > 1).

Python serves gRPC on one core per process, so scaling past a core takes processes. The
supervisor picks the port (reserving it with an SO_REUSEPORT socket when the setting is
0), starts `workers` children with `reuse_port` on — the kernel spreads connections among
them — and each child has its own sessions and batchers. SIGTERM/SIGINT are passed on;
if one child dies, the others are stopped too, so the process manager sees the failure.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from modelhub.common.filestore import atomic_write
from modelhub.inference.settings import InferenceSettings

log = logging.getLogger("modelhub.inference.workers")

_ENV = "MODELHUB_INFERENCE_"


def _reserve_port(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _child_env(settings: InferenceSettings, index: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env[f"{_ENV}WORKERS"] = "1"
    env[f"{_ENV}PORT"] = str(port)
    env[f"{_ENV}REUSE_PORT"] = "true"
    if settings.metrics_port > 0:
        env[f"{_ENV}METRICS_PORT"] = str(settings.metrics_port + index)
    if settings.ready_file:
        env[f"{_ENV}READY_FILE"] = f"{settings.ready_file}.worker{index}"
    return env


def _exit_status(returncode: int | None) -> int:
    """A child's status as a shell reports it: killed by signal N is 128 + N; never 0 for a
    worker that stopped on its own (the process manager must see the failure)."""
    if returncode is None or returncode == 0:
        return 1
    return 128 - returncode if returncode < 0 else returncode


def supervise(settings: InferenceSettings) -> int:
    """Run `settings.workers` server processes until a signal or a child's exit. A worker
    that exits unasked stops the others, and the supervisor exits with its status."""
    reserved = _reserve_port(settings.host) if settings.port == 0 else None
    port = reserved.getsockname()[1] if reserved is not None else settings.port
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "modelhub.inference"], env=_child_env(settings, i, port)
        )
        for i in range(settings.workers)
    ]
    stopping = False
    failure = 0

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("started %d inference workers on port %d", len(children), port)
    ready_written = not settings.ready_file
    try:
        while True:
            if not ready_written:
                ready_written = _write_ready(settings, port, children)
            exited = [c for c in children if c.poll() is not None]
            if len(exited) == len(children):
                break
            if exited and not stopping:
                failure = _exit_status(exited[0].returncode)
                log.error(
                    "worker %d exited with %s: stopping the others",
                    exited[0].pid,
                    exited[0].returncode,
                )
                forward(signal.SIGTERM, None)
            time.sleep(0.1)
    finally:
        if reserved is not None:
            reserved.close()
    return failure


def _write_ready(
    settings: InferenceSettings, port: int, children: list[subprocess.Popen[bytes]]
) -> bool:
    """Write the combined ready file once every worker has written its own."""
    workers = []
    for index, child in enumerate(children):
        path = Path(f"{settings.ready_file}.worker{index}")
        if not path.exists():
            return False
        info = json.loads(path.read_text())
        workers.append({"pid": child.pid, "metrics_port": info.get("metrics_port", 0)})
    atomic_write(
        settings.ready_file,
        json.dumps(
            {
                "port": port,
                "metrics_port": workers[0]["metrics_port"],
                "pid": os.getpid(),
                "workers": workers,
            }
        ),
    )
    return True
