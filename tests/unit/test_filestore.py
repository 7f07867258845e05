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

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
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


def _record_sync_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record fsyncs (of a file or a directory) and renames, as (step, path or inode)."""
    steps: list[tuple[str, str]] = []
    replace, fsync = os.replace, os.fsync

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        steps.append(("fsync dir" if stat.S_ISDIR(st.st_mode) else "fsync file", str(st.st_ino)))
        fsync(fd)

    def recording_replace(src: Path, dst: Path) -> None:
        steps.append(("rename", f"{src} -> {dst}"))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return steps


def test_atomic_write_replaces_a_file_durably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    steps = _record_sync_steps(monkeypatch)
    previous = os.umask(0o022)
    try:
        filestore.atomic_write(target, b'{"n": 1}')
    finally:
        os.umask(previous)
    assert target.read_bytes() == b'{"n": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the usual mode, not mkstemp's 0o600
    # The temp file beside the target synced, renamed over it, then the directory synced.
    [(step1, inode), (step2, rename), (step3, dir_inode)] = steps
    assert (step1, step2, step3) == ("fsync file", "rename", "fsync dir")
    assert inode == str(target.stat().st_ino)
    assert dir_inode == str(tmp_path.stat().st_ino)
    source, dest = rename.split(" -> ")
    assert Path(source).parent == tmp_path and Path(source).name.startswith(".state.json.")
    assert source.endswith(".tmp") and dest == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_takes_text_as_utf8_and_can_skip_the_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_sync_steps(monkeypatch)
    target = tmp_path / "ready.json"
    filestore.atomic_write(str(target), "größe ✓", fsync=False)
    assert target.read_bytes() == "größe ✓".encode()
    assert [step for step, _ in steps] == ["rename"]  # atomic, but nothing synced
    filestore.atomic_write(target, "again", fsync=False)
    assert target.read_text() == "again"
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    # A directory in the way: the rename fails after the bytes were written and synced.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "keep").write_text("x")
    with pytest.raises(IsADirectoryError):
        filestore.atomic_write(blocked, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]
    assert [p.name for p in blocked.iterdir()] == ["keep"]
    # A missing directory: nothing is created anywhere.
    with pytest.raises(FileNotFoundError):
        filestore.atomic_write(tmp_path / "absent" / "f", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]
