"""The local artifact cache: ONNX files by sha256 in a `modelhub.common.filestore`
(`root/sha256/ab/abcdef…`; downloads hashed as they arrive, fsynced and renamed into
place, so a crash never leaves a half-written entry under a valid name).

An entry is verified (size and digest) each time a version loads; a corrupt or truncated
one is deleted and fetched again. A download is refused as soon as it passes the size the
registry declared.

With `max_bytes` set, the cache keeps at most that much on disk: after each download the
least recently used entries (by modification time, refreshed on every hit) are removed.
A removed entry costs only a download the next time its version loads; sessions already
created from it are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from modelhub.common.errors import PayloadTooLargeError, UnavailableError
from modelhub.common.filestore import FileStore, file_digest
from modelhub.inference.source import ModelSource
from modelhub.inference.spec import VersionInfo

log = logging.getLogger("modelhub.inference.cache")

# Temp files of a crashed download are removed at start-up; on a file system without
# locks (shared by several replicas) only those untouched for this long.
_TEMP_GRACE_S = 3600.0


class ArtifactCache:
    """Artifacts of `source`, cached on local disk by digest."""

    def __init__(self, root: Path, source: ModelSource, max_bytes: int = 0) -> None:
        self.root = Path(root)
        self._files = FileStore(self.root)
        self._source = source
        self.max_bytes = max_bytes  # 0: unlimited
        self._locks: dict[str, asyncio.Lock] = {}
        removed = self._files.cleanup_temps(_TEMP_GRACE_S)
        if removed:
            log.warning("removed %d unfinished downloads from the artifact cache", removed)

    def path_of(self, sha256: str) -> Path:
        return self._files.path(sha256)

    async def get(self, info: VersionInfo) -> Path:
        """The local path of `info`'s artifact, fetched (again) if missing or corrupt."""
        lock = self._locks.setdefault(info.sha256, asyncio.Lock())
        async with lock:
            path = self.path_of(info.sha256)
            if path.exists():
                digest, size = await asyncio.to_thread(file_digest, path)
                if digest == info.sha256 and (info.size_bytes <= 0 or size == info.size_bytes):
                    await asyncio.to_thread(os.utime, path)  # most recently used
                    return path
                log.warning(
                    "corrupt cache entry for %s (sha256 %s, %d bytes): fetching it again",
                    info.key,
                    digest,
                    size,
                )
                path.unlink(missing_ok=True)
            path = await self._fetch(info)
            if self.max_bytes > 0:
                await asyncio.to_thread(self._trim, path)
            return path

    def _trim(self, keep: Path) -> None:
        """Remove least recently used entries until the cache fits `max_bytes` (blocking)."""
        entries = []
        for digest in self._files.digests():
            path = self._files.path(digest)
            if path == keep:
                continue  # the entry just fetched
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries) + keep.stat().st_size
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            log.info("evicted %s from the artifact cache (%d bytes)", path.name, size)

    async def _fetch(self, info: VersionInfo) -> Path:
        """Download `info`'s artifact into the store, checked against its digest and size."""
        writer = await asyncio.to_thread(self._files.writer, max(info.size_bytes, 0))
        committed = False
        try:
            async for chunk in self._source.download(info):
                try:
                    await asyncio.to_thread(writer.write, chunk)
                except PayloadTooLargeError:
                    raise _mismatch(info, f"more than {info.size_bytes} bytes") from None
            await asyncio.to_thread(writer.finish)
            if writer.sha256 != info.sha256 or (
                info.size_bytes > 0 and writer.size != info.size_bytes
            ):
                raise _mismatch(info, f"sha256 {writer.sha256} ({writer.size} bytes)")
            path = await asyncio.to_thread(self._files.commit, writer)
            committed = True
            return path
        finally:
            if not committed:
                writer.discard()


def _mismatch(info: VersionInfo, received: str) -> UnavailableError:
    return UnavailableError(
        f"the artifact of {info.key} arrived with {received}; expected {info.sha256} "
        f"({info.size_bytes} bytes)",
        reason="ARTIFACT_DIGEST_MISMATCH",
    )
