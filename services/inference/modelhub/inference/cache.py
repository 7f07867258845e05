"""The local artifact cache: ONNX files by sha256 under `root/sha256/ab/abcdef…`.

An entry is verified (size and digest) each time a version loads; a corrupt or truncated
one is deleted and fetched again. Downloads go to a temporary file in the same folder,
are hashed as they arrive, fsynced and renamed into place, so a crash never leaves a
half-written entry under a valid name.

With `max_bytes` set, the cache keeps at most that much on disk: after each download the
least recently used entries (by modification time, refreshed on every hit) are removed.
A removed entry costs only a download the next time its version loads; sessions already
created from it are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from modelhub.common.errors import UnavailableError
from modelhub.inference.source import ModelSource
from modelhub.inference.spec import VersionInfo

log = logging.getLogger("modelhub.inference.cache")

_READ_CHUNK = 1 << 20


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactCache:
    """Artifacts of `source`, cached on local disk by digest."""

    def __init__(self, root: Path, source: ModelSource, max_bytes: int = 0) -> None:
        self.root = Path(root)
        self._source = source
        self.max_bytes = max_bytes  # 0: unlimited
        self._locks: dict[str, asyncio.Lock] = {}

    def path_of(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    async def get(self, info: VersionInfo) -> Path:
        """The local path of `info`'s artifact, fetched (again) if missing or corrupt."""
        lock = self._locks.setdefault(info.sha256, asyncio.Lock())
        async with lock:
            path = self.path_of(info.sha256)
            if path.exists():
                digest, size = await asyncio.to_thread(_file_digest, path)
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
            await self._fetch(info, path)
            if self.max_bytes > 0:
                await asyncio.to_thread(self._trim, path)
            return path

    def _trim(self, keep: Path) -> None:
        """Remove least recently used entries until the cache fits `max_bytes` (blocking)."""
        entries = []
        for path in (self.root / "sha256").glob("*/*"):
            if path.name.startswith(".") or path == keep:
                continue  # downloads in progress, and the entry just fetched
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

    async def _fetch(self, info: VersionInfo, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{info.sha256}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        size = 0
        fh: BinaryIO = await asyncio.to_thread(tmp.open, "wb")
        try:
            async for chunk in self._source.download(info):
                await asyncio.to_thread(_write, fh, digest, chunk)
                size += len(chunk)
            await asyncio.to_thread(_sync_close, fh)
            if digest.hexdigest() != info.sha256 or (
                info.size_bytes > 0 and size != info.size_bytes
            ):
                raise UnavailableError(
                    f"the artifact of {info.key} arrived with sha256 {digest.hexdigest()} "
                    f"({size} bytes); expected {info.sha256} ({info.size_bytes} bytes)",
                    reason="ARTIFACT_DIGEST_MISMATCH",
                )
            os.replace(tmp, path)
        finally:
            if not fh.closed:
                fh.close()
            tmp.unlink(missing_ok=True)


def _write(fh: BinaryIO, digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    fh.write(chunk)


def _sync_close(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
