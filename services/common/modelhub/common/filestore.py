"""A content-addressed file store on a local directory: files by sha256.

Layout: `<root>/sha256/<aa>/<sha256>` for files, `<root>/tmp/` for writes in progress.
Bytes go to a temp file while their sha256 and size are computed; a file appears under
its digest only complete and durable (fsync → atomic rename → fsync of the directory), so
a crash never leaves a half-written file under a valid name.

Several processes may share the folder (registry replicas, inference replicas on one
volume). A writer holds an exclusive `flock` on its temp file from creation until the file
is in place, so `cleanup_temps` removes only temp files nobody holds: the debris of a
crashed writer. On a file system without locks, temp files are judged by age instead.

`atomic_write` replaces a small file whole (state, manifests, ready files) the same way.

The registry's blob store and the inference artifact cache are built on this module; the
calls are blocking (run them in a worker thread from async code), but for `read_chunks`,
which streams a file to async code.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import BinaryIO

from modelhub.common.errors import InvalidArgumentError, PayloadTooLargeError

_DIGEST = re.compile(r"[0-9a-f]{64}")
_READ_CHUNK = 1 << 20
# A file system without locks (some NFSv3 mounts): temp files are then judged by age.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


def is_digest(text: str) -> bool:
    """Whether `text` is a sha256 digest as this store names files (64 lowercase hex)."""
    return _DIGEST.fullmatch(text) is not None


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The sha256 (hex) and size of a file, read in 1 MiB blocks (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def read_chunks(
    path: str | os.PathLike[str], chunk_size: int, limit: int | None = None
) -> AsyncGenerator[bytes, None]:
    """A file's bytes in pieces of at most `chunk_size`, up to `limit` bytes (None: all of
    them), opened and read in a worker thread. Ends where the file does: a caller that
    expects `limit` bytes counts what it got. FileNotFoundError (at the first piece) when
    the file is missing. The file stays open until the iteration ends or the iterator is
    closed: wrap it in `contextlib.aclosing` when it may be left early."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        left = limit
        while left is None or left > 0:
            chunk = await asyncio.to_thread(
                handle.read, chunk_size if left is None else min(chunk_size, left)
            )
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        handle.close()


def fsync_dir(path: Path) -> None:
    """Make a rename or removal in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = True) -> None:
    """Replace `path` with `data` (str is written as UTF-8) all at once: readers see the old
    file or the new one, never a part. The bytes go to a temp file in the same directory
    (`.<name>.<random>.tmp`, created with the usual mode, 0o666 less the umask), which is
    renamed over `path`. With `fsync` (the default) the temp file is fsynced before the
    rename and the directory after it, so the new content also survives a crash; without,
    only the atomicity holds. The temp file is removed when any step fails (blocking)."""
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, "wb") as out:
            out.write(payload)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


def flock_exclusive(fd: int, wait: bool) -> bool | None:
    """Take an exclusive flock: True when held, False when another process holds it, None
    when the file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return None
        raise
    return True


def _create_locked(tmp_dir: Path) -> tuple[Path, BinaryIO]:
    """A new temp file, exclusively locked. Between creating and locking it another
    process's cleanup may have taken the lock and removed the file: then the path no longer
    names our file and we start over with a new one."""
    while True:
        path = tmp_dir / f"{uuid.uuid4().hex}.part"
        handle = open(path, "xb")  # noqa: SIM115 - returned to the caller, who closes it
        try:
            flock_exclusive(handle.fileno(), wait=True)
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return path, handle
        except FileNotFoundError:
            pass
        except BaseException:
            handle.close()
            raise
        handle.close()


class FileWriter:
    """A write in progress: bytes go to a locked temp file while their sha256 and size are
    computed. `max_bytes` (0: no limit) refuses a write that would pass it, before any of
    its bytes land, with PayloadTooLargeError naming `label`."""

    def __init__(self, tmp_dir: Path, max_bytes: int = 0, label: str = "the file") -> None:
        # Open (and locked) until the file is in place or discarded.
        self.temp_path, self._file = _create_locked(tmp_dir)
        self._hash = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes
        self.label = label

    def write(self, chunk: bytes) -> None:
        if self.max_bytes and self.size + len(chunk) > self.max_bytes:
            raise PayloadTooLargeError(
                f"{self.label} exceeds the limit of {self.max_bytes} bytes",
                metadata={"limit_bytes": str(self.max_bytes)},
            )
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the temp file. It stays open, and locked, until
        `FileStore.commit` or `discard`."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        """Drop the write: close and remove the temp file (also when closing fails)."""
        try:
            if not self._file.closed:
                # Closing flushes what is buffered, which fails again on a full disk: the
                # temp file must go all the same.
                with contextlib.suppress(OSError):
                    self._file.close()
        finally:
            self.temp_path.unlink(missing_ok=True)


class FileStore:
    """Files by sha256 under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the file of digest `sha256` lives (whether or not it is there)."""
        if not is_digest(sha256):
            raise InvalidArgumentError(
                f"{sha256[:80]!r} is not a sha256 digest (64 lowercase hex digits)",
                field="sha256",
                reason="INVALID_DIGEST",
            )
        return self.blob_dir / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self, max_bytes: int = 0, label: str = "the file") -> FileWriter:
        """A new write (a locked temp file); `max_bytes` > 0 bounds its size."""
        return FileWriter(self.tmp_dir, max_bytes, label)

    def commit(self, writer: FileWriter) -> Path:
        """Move a finished write (see `FileWriter.finish`) under its digest and make the
        rename durable. Identical content is kept once: if the file exists already the
        temp file is dropped."""
        final = self.path(writer.sha256)
        if final.is_file() and final.stat().st_size == writer.size:
            writer.discard()
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(writer.temp_path, final)
        finally:
            writer.close()
        fsync_dir(final.parent)
        return final

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        """The digests of the files in the store (names that are no digest are skipped)."""
        for shard in self.blob_dir.iterdir():
            if shard.is_dir():
                for entry in shard.iterdir():
                    if is_digest(entry.name):
                        yield entry.name

    def cleanup_temps(self, grace_s: float) -> int:
        """Remove temp files no writer holds (left by a crashed writer, in this process or
        another sharing the folder). Without file locks, only those untouched for
        `grace_s`. Returns how many were removed."""
        removed = 0
        for leftover in self.tmp_dir.iterdir():
            try:
                fd = os.open(leftover, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                held = flock_exclusive(fd, wait=False)
                if held is False:
                    continue
                if held is None and time.time() - os.fstat(fd).st_mtime < grace_s:
                    continue
                leftover.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        return removed
