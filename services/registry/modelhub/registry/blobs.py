"""Content-addressed artifact store on a local directory.

Layout: `<root>/sha256/<aa>/<sha256>` for blobs, `<root>/tmp/` for uploads in progress.
A blob appears under its final name only complete and fsynced (write temp → fsync →
rename → fsync directory), so a crash never leaves a half-written artifact where a version
could point at it.

Several registry replicas may share the folder. An upload holds an exclusive `flock` on
its temp file from creation until the blob is in place, so a replica's start-up cleanup
(`cleanup_temps`) removes only temp files nobody holds: the debris of a crashed writer.
Unreferenced blobs are removed by the service under the database's blob claims (see
`RegistryStore.drop_blob`), never by this module on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from modelhub.common.errors import NotFoundError, ResourceExhaustedError

# "No space left on device" and "Disk quota exceeded": the operator has to act, the client
# can only retry later. Every other OSError is a server fault (INTERNAL).
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# A file system without locks (some NFSv3 mounts): temp files are then judged by age.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


def _lock(fd: int, wait: bool) -> bool | None:
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
    replica's cleanup may have taken the lock and removed the file: then the path no longer
    names our file and we start over with a new one."""
    while True:
        path = tmp_dir / f"{uuid.uuid4().hex}.part"
        handle = open(path, "xb")  # noqa: SIM115 - returned to the caller, who closes it
        try:
            _lock(handle.fileno(), wait=True)
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return path, handle
        except FileNotFoundError:
            pass
        except BaseException:
            handle.close()
            raise
        handle.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """An upload in progress: bytes go to a temp file while sha256 and size are computed."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        # Open (and locked) until the blob is in place or discarded.
        self.temp_path, self._file = _create_locked(store.tmp_dir)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the temp file (blocking: run in a thread). The file stays open,
        and locked, until `BlobStore.commit` or `discard`."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        try:
            if not self._file.closed:
                # Closing flushes what is buffered, which fails again on a full disk: the
                # temp file must go all the same.
                with contextlib.suppress(OSError):
                    self._file.close()
        finally:
            self.temp_path.unlink(missing_ok=True)


class BlobStore:
    @contextlib.contextmanager
    def storage_errors(self) -> Iterator[None]:
        """Turn a full disk or an exhausted quota under the store into STORAGE_FULL."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            name = errno.errorcode.get(exc.errno, str(exc.errno))
            raise ResourceExhaustedError(
                f"the artifact store at {self.root} is full ({name}: {exc.strerror}): free "
                "space or raise the quota there (MODELHUB_REGISTRY_BLOB_DIR), or delete "
                "unused model versions, then retry the upload",
                reason="STORAGE_FULL",
                metadata={"errno": name, "blob_dir": str(self.root)},
            ) from exc

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.blob_dir / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def commit(self, writer: BlobWriter) -> Path:
        """Move a finished upload under its digest (blocking). Identical content is kept once:
        if the blob exists already the temp file is dropped."""
        final = self.path(writer.sha256)
        if final.is_file() and final.stat().st_size == writer.size:
            writer.discard()
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(writer.temp_path, final)
        finally:
            writer.close()
        _fsync_dir(final.parent)
        return final

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def digests(self) -> Iterable[str]:
        for shard in self.blob_dir.iterdir():
            if shard.is_dir():
                for blob in shard.iterdir():
                    yield blob.name

    def cleanup_temps(self, grace_s: float) -> int:
        """Remove temp files no writer holds (left by a crashed upload, here or on another
        replica sharing the folder). Without file locks, only those untouched for
        `grace_s`. Returns how many were removed."""
        removed = 0
        for leftover in self.tmp_dir.iterdir():
            try:
                fd = os.open(leftover, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                held = _lock(fd, wait=False)
                if held is False:
                    continue
                if held is None and time.time() - os.fstat(fd).st_mtime < grace_s:
                    continue
                leftover.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    async def read_chunks(self, sha256: str, chunk_size: int) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (file reads run in a worker thread)."""
        try:
            handle = await asyncio.to_thread(open, self.path(sha256), "rb")
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact sha256:{sha256} is missing from the blob store",
                reason="ARTIFACT_MISSING",
            ) from None
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            handle.close()
