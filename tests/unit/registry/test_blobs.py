"""The blob store on a full disk: errors become STORAGE_FULL, temp files never stay."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from modelhub.common.errors import ResourceExhaustedError
from modelhub.registry.blobs import BlobStore


class _FullFile:
    """A file on a full disk: writing and the flush in close() both fail."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.closed = False

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        self._inner.close()  # type: ignore[attr-defined]
        self.closed = True
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_discard_removes_the_temp_file_even_when_close_fails(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    writer = store.writer()
    writer._file = _FullFile(writer._file)  # type: ignore[assignment]
    with pytest.raises(ResourceExhaustedError) as info, store.storage_errors():
        writer.write(b"x" * 10)
    assert info.value.reason == "STORAGE_FULL"
    assert info.value.metadata == {"errno": "ENOSPC", "blob_dir": str(tmp_path)}
    writer.discard()
    assert list(store.tmp_dir.iterdir()) == []


def test_other_os_errors_pass_through(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(PermissionError), store.storage_errors():
        raise PermissionError(errno.EACCES, "denied")


def test_cleanup_spares_temp_files_an_upload_holds(tmp_path: Path) -> None:
    """A replica's start-up cleanup removes only the debris of dead writers: a live
    upload's temp file (locked) stays, also on another store over the same folder."""
    live = BlobStore(tmp_path).writer()
    live.write(b"in progress")
    dead = tmp_path / "tmp" / "crashed.part"
    dead.write_bytes(b"left by a killed process")
    other_replica = BlobStore(tmp_path)
    assert other_replica.cleanup_temps(grace_s=3600) == 1
    assert [p.name for p in other_replica.tmp_dir.iterdir()] == [live.temp_path.name]
    live.finish()
    assert other_replica.cleanup_temps(grace_s=3600) == 0  # finished, not yet committed
    path = other_replica.commit(live)
    assert path.read_bytes() == b"in progress"
    assert list(other_replica.tmp_dir.iterdir()) == []
