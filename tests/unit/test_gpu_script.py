"""bench/gpu.sh is ready for the day a GPU is lent: its syntax, and its CPU branch end to
end with the shortest timings (the service benchmark step is bench/run.py's own)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.sh"


def test_syntax() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_cpu_branch_prints_every_table() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-only", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "no usable GPU: CPU branch only" in out
    assert "| mlp | CPUExecutionProvider |" in out
    assert "| cnn_small | CPUExecutionProvider |" in out
    for method in ("dynamic-int8", "static-int8", "fp16"):
        assert f"| mlp | {method} |" in out
    assert "Unknown option" not in result.stderr
