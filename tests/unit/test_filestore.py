"""The content-addressed file store both the registry's blobs and the inference cache use:
digest while writing, size limit, temp → fsync → rename → fsync of the directory, and
nothing half-written under a valid name."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from modelhub.common import filestore
from modelhub.common.errors import InvalidArgumentError, PayloadTooLargeError
from modelhub.common.filestore import FileStore, file_digest


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_write_lands_under_its_digest_and_is_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[tuple[str, int]] = []
    replace, fsync = os.replace, os.fsync

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        steps.append(("fsync dir" if stat.S_ISDIR(st.st_mode) else "fsync file", st.st_ino))
        fsync(fd)

    def recording_replace(src: Path, dst: Path) -> None:
        steps.append(("rename", os.stat(src).st_ino))
        replace(src, dst)

    monkeypatch.setattr(filestore.os, "fsync", recording_fsync)
    monkeypatch.setattr(filestore.os, "replace", recording_replace)
    store = FileStore(tmp_path)
    writer = store.writer()
    for chunk in (b"hello ", b"world"):
        writer.write(chunk)
    assert (writer.sha256, writer.size) == (_digest(b"hello world"), 11)
    assert writer.temp_path.parent == store.tmp_dir
    assert not store.exists(writer.sha256)  # nothing under the digest before the commit
    writer.finish()
    path = store.commit(writer)
    # The file's data synced before the rename, the directory holding it after it.
    file_inode, shard_inode = path.stat().st_ino, path.parent.stat().st_ino
    assert steps == [("fsync file", file_inode), ("rename", file_inode), ("fsync dir", shard_inode)]
    assert path == tmp_path / "sha256" / writer.sha256[:2] / writer.sha256
    assert path.read_bytes() == b"hello world"
    assert store.exists(writer.sha256)
    assert list(store.digests()) == [writer.sha256]
    assert list(store.tmp_dir.iterdir()) == []
    assert file_digest(path) == (writer.sha256, 11)


def test_identical_content_is_kept_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    paths = []
    for _ in range(2):
        writer = store.writer()
        writer.write(b"same bytes")
        writer.finish()
        paths.append(store.commit(writer))
    assert paths[0] == paths[1]
    assert list(store.digests()) == [_digest(b"same bytes")]
    assert list(store.tmp_dir.iterdir()) == []


def test_the_size_limit_refuses_a_write_before_its_bytes_land(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    writer = store.writer(max_bytes=10, label="the upload")
    writer.write(b"x" * 6)
    with pytest.raises(PayloadTooLargeError) as info:
        writer.write(b"y" * 5)
    assert info.value.message == "the upload exceeds the limit of 10 bytes"
    assert info.value.metadata == {"limit_bytes": "10"}
    assert writer.size == 6
    writer.write(b"z" * 4)  # up to the limit is fine
    writer.finish()
    assert writer.temp_path.read_bytes() == b"x" * 6 + b"z" * 4
    writer.discard()
    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.digests()) == []


def test_only_digests_name_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for bad in ("../../etc/passwd", "", "ABC", _digest(b"x").upper(), _digest(b"x")[:-1]):
        with pytest.raises(InvalidArgumentError, match="not a sha256 digest"):
            store.path(bad)
    shard = store.blob_dir / "ab"
    shard.mkdir()
    (shard / "notes.txt").write_text("not a blob")
    (shard / f".{_digest(b'x')}.part").write_text("an old partial download")
    assert list(store.digests()) == []


def test_cleanup_removes_only_temp_files_no_writer_holds(tmp_path: Path) -> None:
    live = FileStore(tmp_path).writer()
    live.write(b"in progress")
    (tmp_path / "tmp" / "crashed.part").write_bytes(b"left by a killed process")
    other = FileStore(tmp_path)  # another process sharing the folder
    assert other.cleanup_temps(grace_s=3600) == 1
    assert [p.name for p in other.tmp_dir.iterdir()] == [live.temp_path.name]
    live.discard()
    assert other.cleanup_temps(grace_s=3600) == 0
    assert list(other.tmp_dir.iterdir()) == []
