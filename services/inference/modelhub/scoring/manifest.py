"""The work directory of a scoring job: one part file per partition and a manifest saying
which partitions are done, so that a job that stopped (a worker killed, the cluster gone,
Ctrl-C) resumes where it stopped when the same command runs again.

The manifest records the job's identity — the input file (path, size, modification
time), the model version's sha256, the column mapping and the partition size — and the
partitions with their row ranges. A run whose identity differs refuses the directory
rather than mixing parts of two jobs (`restart` clears it). A partition counts as done
only once the driver has recorded it, after its part file was renamed into place; a part
file without a record is simply written again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhub.common.errors import FailedPreconditionError
from modelhub.common.filestore import atomic_write
from modelhub.scoring.io import Partition

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class PartDone:
    """What a finished partition produced."""

    rows: int  # rows scored (in the part file)
    errors: int  # rows in the errors part file


def _normalized(value: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(value, sort_keys=True))
    return result


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    labels = {
        "input": "the input file changed (path, size or modification time)",
        "model": "the model version differs (another sha256)",
        "plan": "the column mapping or id column differs",
        "partition_rows": "the partition size differs",
    }
    keys = sorted(set(old) | set(new))
    return [labels.get(k, k) for k in keys if old.get(k) != new.get(k)]


class Manifest:
    """The manifest of one work directory (used by the job's driver only)."""

    def __init__(
        self,
        directory: Path,
        job: dict[str, Any],
        partitions: list[Partition],
        done: dict[int, PartDone],
    ) -> None:
        self.directory = directory
        self.job = job
        self.partitions = partitions
        self.done = done
        self.resumed_count = len(done)  # partitions found done when the job started

    @classmethod
    def open(
        cls,
        directory: Path,
        job: Mapping[str, Any],
        partitions: list[Partition],
        *,
        restart: bool = False,
    ) -> Manifest:
        """The manifest of `directory` for `job`: resumed if it is the same job, new if
        there is none (or `restart`)."""
        job = _normalized(job)
        path = directory / MANIFEST
        if path.exists() and not restart:
            try:
                data = json.loads(path.read_text())
                same = data.get("format") == FORMAT and data.get("job") == job
            except (OSError, ValueError):
                data, same = {}, False
            if not same:
                why = _differences(data.get("job", {}), job) or ["it is unreadable"]
                raise FailedPreconditionError(
                    f"the work directory {str(directory)!r} holds another scoring job "
                    f"({'; '.join(why)}): pass --restart to discard it, or choose another "
                    "output or --work-dir",
                    reason="WORK_DIR_IN_USE",
                )
            stored = [Partition.from_json(p) for p in data["partitions"]]
            manifest = cls(directory, job, stored, {})
            for key, value in data.get("done", {}).items():
                index = int(key)
                if manifest.part_path(index).exists():
                    manifest.done[index] = PartDone(int(value["rows"]), int(value["errors"]))
            manifest.resumed_count = len(manifest.done)
            return manifest
        if restart and directory.exists():
            clear(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = cls(directory, job, list(partitions), {})
        manifest.save()
        return manifest

    def part_path(self, index: int) -> Path:
        return self.directory / f"part-{index:05d}.parquet"

    def errors_path(self, index: int) -> Path:
        return self.directory / f"errors-{index:05d}.parquet"

    def pending(self) -> list[Partition]:
        return [p for p in self.partitions if p.index not in self.done]

    def complete(self) -> bool:
        return len(self.done) == len(self.partitions)

    def record(self, index: int, rows: int, errors: int) -> None:
        self.done[index] = PartDone(rows, errors)
        self.save()

    def save(self) -> None:
        """Write the manifest atomically (a temporary file renamed into place)."""
        data = {
            "format": FORMAT,
            "job": self.job,
            "partitions": [p.to_json() for p in self.partitions],
            "done": {
                str(i): {"rows": d.rows, "errors": d.errors} for i, d in sorted(self.done.items())
            },
        }
        atomic_write(self.directory / MANIFEST, json.dumps(data, separators=(",", ":")))


def clear(directory: Path) -> None:
    """Remove a work directory's own files (parts, errors parts, manifest, temporaries),
    then the directory if that leaves it empty."""
    for entry in directory.iterdir():
        name = entry.name
        ours = (
            name == MANIFEST
            or (name.startswith(("part-", "errors-")) and name.endswith(".parquet"))
            or (name.startswith(".") and name.endswith(".tmp"))
        )
        if ours and entry.is_file():
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else lives there: leave it
        directory.rmdir()
