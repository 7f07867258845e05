"""The suite relies on `--dist loadgroup` keeping each xdist_group on one worker (Envoy's
heavy tests, the console's browser session). pytest 9.2 silently broke that
(pytest-dev/pytest-xdist#1386): this runs a tiny suite the way `make test` does and checks
the group stayed together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SUITE = """
import os
import pytest

pytestmark = [pytest.mark.xdist_group("together")]


@pytest.mark.parametrize("i", range(6))
def test_worker(i):
    print("WORKER", os.environ["PYTEST_XDIST_WORKER"])
"""


def test_a_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --dist loadgroup\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", "-rA"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = set(re.findall(r"^\[(gw\d+)\] .* PASSED", result.stdout, re.M))
    assert len(workers) == 1, result.stdout
