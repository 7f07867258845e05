"""Content-addressed artifact store on a local directory.

Layout: `<root>/sha256/<aa>/<sha256>` for blobs, `<root>/tmp/` for uploads in progress.
A blob appears under its final name only complete and fsynced (write temp → fsync →
rename → fsync directory), so a crash never leaves a half-written artifact where a version
could point at it. Temp files and unreferenced blobs left by a crash are removed by
`cleanup` at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from modelhub.common.errors import NotFoundError, ResourceExhaustedError

# "No space left on device" and "Disk quota exceeded": the operator has to act, the client
# can only retry later. Every other OSError is a server fault (INTERNAL).
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


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
        self.temp_path = store.tmp_dir / f"{uuid.uuid4().hex}.part"
        self._file = open(self.temp_path, "xb")  # noqa: SIM115 - closed in finish/discard
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
        """Flush and fsync the temp file (blocking: run in a thread)."""
        self._file.flush()
        os.fsync(self._file.fileno())
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
        os.replace(writer.temp_path, final)
        _fsync_dir(final.parent)
        return final

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def digests(self) -> Iterable[str]:
        for shard in self.blob_dir.iterdir():
            if shard.is_dir():
                for blob in shard.iterdir():
                    yield blob.name

    def cleanup(self, referenced: set[str]) -> tuple[int, int]:
        """Remove temp files and blobs no version references. Returns (temps, blobs)."""
        temps = 0
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
            temps += 1
        blobs = 0
        for digest in list(self.digests()):
            if digest not in referenced:
                self.delete(digest)
                blobs += 1
        return temps, blobs

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
