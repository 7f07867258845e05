"""Processes the memory benchmarks start and watch: resident memory of a pid, and an
inference server serving a model directory (a subprocess on an ephemeral port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def start_inference(
    tmp: Path, models: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m modelhub.inference` on the ONNX files of `models` (CPU, no registry);
    returns the process and its address once it serves. Log: tmp/inference.log."""
    ready = tmp / "inference.ready"
    full_env = {
        **os.environ,
        "MODELHUB_INFERENCE_PORT": "0",
        "MODELHUB_INFERENCE_METRICS_PORT": "-1",
        "MODELHUB_INFERENCE_READY_FILE": str(ready),
        "MODELHUB_INFERENCE_MODEL_SOURCE": "directory",
        "MODELHUB_INFERENCE_MODEL_DIR": str(models),
        "MODELHUB_INFERENCE_CACHE_DIR": str(tmp / "cache"),
        "MODELHUB_INFERENCE_DEVICE": "cpu",
        "MODELHUB_LOG_LEVEL": "WARNING",
        **env,
    }
    log = (tmp / "inference.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelhub.inference"],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    for _ in range(1200):
        if ready.exists():
            info = json.loads(ready.read_text())
            return process, f"127.0.0.1:{info['port']}"
        if process.poll() is not None:
            raise SystemExit(f"inference exited:\n{(tmp / 'inference.log').read_text()[-3000:]}")
        time.sleep(0.05)
    raise SystemExit("inference did not start")
