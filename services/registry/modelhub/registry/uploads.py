"""Upload sessions: one artifact sent over several calls (start, append chunks, commit), for
HTTP clients and browsers that cannot stream a request.

Every replica sharing the blob folder can take any call of a session: its state lives in
files under `<blob_dir>/uploads/<id>/`, never in a process:

    metadata     the version's metadata as the client sent it (opaque to this module)
    state.json   bytes received, the last chunk's offset and digest, times, the version a
                 commit created
    data         the bytes received (only the first `received` count: an append that
                 failed half-way may have left more, which the next append overwrites)
    lock         flock'ed while a call reads and changes the session

Nothing half-written is ever visible: a session is built under `.new-<id>` and renamed
into place; `state.json` is replaced atomically (temp file, fsync, rename) only after the
data it counts is fsynced; a session goes away by a rename to `.trash-…` before its files
are removed. Memory stays bounded: chunks go straight to disk, and a commit reads the data
back in pieces.

A session that sees no append or commit for `ttl_s` expires: calls on it answer NOT_FOUND
(`UPLOAD_EXPIRED`), and `sweep` (every replica runs it periodically) removes it. After a
commit the session keeps only its state, so that a retried commit answers the same version,
until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from modelhub.common.errors import (
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    ResourceExhaustedError,
)
from modelhub.common.filestore import atomic_write, flock_exclusive, fsync_dir, read_chunks

# The largest chunk one append takes (the API's max_chunk_bytes).
MAX_CHUNK_BYTES = 8 << 20
# Pieces a commit reads the data back in.
READ_CHUNK_BYTES = 1 << 20
# How long a call waits for another call on the same session to finish.
BUSY_WAIT_S = 5.0

_ID = re.compile(r"[0-9a-f]{32}")
_STATE = "state.json"
_DATA = "data"
_METADATA = "metadata"
_LOCK = "lock"
_NEW = ".new-"
_TRASH = ".trash-"

StorageErrors = Callable[[], contextlib.AbstractContextManager[None]]


@dataclass(frozen=True, slots=True)
class UploadSession:
    """Where one upload session stands. Times are wall-clock seconds (shared by replicas)."""

    id: str
    # The version's metadata as started, in the transport's encoding (opaque here).
    metadata: bytes
    # The artifact size the metadata declared (0: not declared).
    declared_bytes: int
    received_bytes: int
    create_time: float
    update_time: float
    expire_time: float
    # The last chunk appended: where it started and its sha256 (a retry of it is
    # acknowledged without appending it again).
    last_offset: int = -1
    last_sha256: str = ""
    # `models/{m}/versions/{n}` once committed.
    committed_version: str = ""

    @property
    def name(self) -> str:
        return f"uploads/{self.id}"


def parse_name(name: str, field: str = "name") -> str:
    """The session id of `uploads/{id}`, or INVALID_ARGUMENT."""
    upload_id = name.removeprefix("uploads/")
    if upload_id == name or not _ID.fullmatch(upload_id):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidArgumentError(
            f"{field} {shown!r} is not an upload session name: expected 'uploads/{{id}}' as "
            "StartUpload answered it",
            field=field,
        )
    return upload_id


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _try_lock(fd: int) -> bool:
    """An exclusive flock without waiting: False when another call holds it. A file system
    without locks counts as locked (the in-process guard still applies)."""
    return flock_exclusive(fd, wait=False) is not False


def _state_json(session: UploadSession) -> bytes:
    fields = asdict(session)
    del fields["metadata"]
    return json.dumps(fields, sort_keys=True).encode()


class UploadSessions:
    """Upload sessions as files under `root` (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        *,
        ttl_s: float,
        max_sessions: int,
        storage_errors: StorageErrors = contextlib.nullcontext,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._storage_errors = storage_errors
        self._clock = clock
        # Sessions a call of this process holds (flock alone does not exclude two calls of
        # one process on every file system: NFS emulates it with POSIX record locks).
        self._held: set[str] = set()
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, upload_id: str) -> Path:
        return self.root / upload_id

    # ------------------------------------------------------------------- reading

    def _read(self, upload_id: str, *, expired_ok: bool = False) -> UploadSession:
        """The session's state (blocking), NOT_FOUND when there is none or it expired."""
        directory = self._dir(upload_id)
        try:
            fields: dict[str, Any] = json.loads((directory / _STATE).read_bytes())
            metadata = (directory / _METADATA).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"upload session uploads/{upload_id} not found (cancelled, expired after "
                f"{self.ttl_s:g} s without an append, or never started): start a new one",
                reason="UPLOAD_NOT_FOUND",
                metadata={"upload": f"uploads/{upload_id}"},
            ) from None
        session = UploadSession(metadata=metadata, **fields)
        if not expired_ok and self._clock() >= session.expire_time:
            raise NotFoundError(
                f"upload session uploads/{upload_id} expired: it saw no append or commit for "
                f"{self.ttl_s:g} s; start a new one",
                reason="UPLOAD_EXPIRED",
                metadata={"upload": f"uploads/{upload_id}"},
            )
        return session

    async def get(self, upload_id: str) -> UploadSession:
        return await asyncio.to_thread(self._read, upload_id)

    async def read_chunks(self, session: UploadSession) -> AsyncIterator[bytes]:
        """The session's bytes, in pieces (file reads in a worker thread)."""
        left = session.received_bytes
        path = self._dir(session.id) / _DATA
        async with contextlib.aclosing(read_chunks(path, READ_CHUNK_BYTES, left)) as chunks:
            async for chunk in chunks:
                left -= len(chunk)
                yield chunk
        if left > 0:
            raise FailedPreconditionError(
                f"upload session {session.name} lost bytes it had acknowledged (its data "
                "file is shorter): cancel it and upload again",
                reason="UPLOAD_DATA_LOST",
            )

    # ------------------------------------------------------------------- writing

    def _save(self, session: UploadSession) -> None:
        """Replace the state atomically (blocking)."""
        atomic_write(self._dir(session.id) / _STATE, _state_json(session))

    def _live_count(self) -> int:
        """Sessions that hold bytes (committed ones keep only their state)."""
        count = 0
        for entry in self.root.iterdir():
            if _ID.fullmatch(entry.name) and (entry / _DATA).exists():
                count += 1
        return count

    def _create(self, metadata: bytes, declared_bytes: int) -> UploadSession:
        if self._live_count() >= self.max_sessions:
            raise ResourceExhaustedError(
                f"this registry holds {self.max_sessions} upload sessions in progress, its "
                "limit (MODELHUB_REGISTRY_MAX_UPLOAD_SESSIONS): commit or cancel one, or "
                f"wait until idle ones expire ({self.ttl_s:g} s)",
                reason="TOO_MANY_UPLOADS",
                metadata={"limit": str(self.max_sessions)},
            )
        now = self._clock()
        session = UploadSession(
            id=uuid.uuid4().hex,
            metadata=metadata,
            declared_bytes=declared_bytes,
            received_bytes=0,
            create_time=now,
            update_time=now,
            expire_time=now + self.ttl_s,
        )
        building = self.root / f"{_NEW}{session.id}"
        building.mkdir()
        try:
            _write_synced(building / _METADATA, metadata)
            _write_synced(building / _DATA, b"")
            _write_synced(building / _LOCK, b"")
            _write_synced(building / _STATE, _state_json(session))
            fsync_dir(building)
            os.rename(building, self._dir(session.id))
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        fsync_dir(self.root)
        return session

    async def create(self, metadata: bytes, declared_bytes: int) -> UploadSession:
        """A new, empty session (RESOURCE_EXHAUSTED past `max_sessions`)."""
        with self._storage_errors():
            return await asyncio.to_thread(self._create, metadata, declared_bytes)

    @contextlib.asynccontextmanager
    async def locked(self, upload_id: str, *, expired_ok: bool = False) -> AsyncIterator[None]:
        """Hold the session against every other call, on this replica and the others;
        ABORTED (`UPLOAD_BUSY`) when another call keeps it longer than BUSY_WAIT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_WAIT_S

        def busy() -> ConflictError:
            return ConflictError(
                f"another call is appending to or committing uploads/{upload_id}: wait for "
                "it, then GetUpload to see where the session stands",
                reason="UPLOAD_BUSY",
            )

        while upload_id in self._held:
            if loop.time() > deadline:
                raise busy()
            await asyncio.sleep(0.02)
        self._held.add(upload_id)
        try:
            try:
                fd = os.open(self._dir(upload_id) / _LOCK, os.O_RDWR)
            except FileNotFoundError:
                await asyncio.to_thread(self._read, upload_id, expired_ok=expired_ok)
                raise  # (the session exists after all: a bug, reported as such)
            try:
                while not _try_lock(fd):
                    if loop.time() > deadline:
                        raise busy()
                    await asyncio.sleep(0.02)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._held.discard(upload_id)

    def _append(self, upload_id: str, offset: int, chunk: bytes, max_total: int) -> UploadSession:
        """Append under the session's lock (blocking)."""
        session = self._read(upload_id)
        if session.committed_version:
            raise FailedPreconditionError(
                f"upload session {session.name} was committed as "
                f"{session.committed_version}: start a new session for another version",
                reason="UPLOAD_COMMITTED",
                metadata={"version": session.committed_version},
            )
        digest = hashlib.sha256(chunk).hexdigest()
        received = session.received_bytes
        now = self._clock()
        if offset != received:
            if (offset, offset + len(chunk), digest) == (
                session.last_offset, received, session.last_sha256
            ):  # fmt: skip
                # The last chunk again (its answer was lost): acknowledged, not appended.
                session = replace(session, update_time=now, expire_time=now + self.ttl_s)
                self._save(session)
                return session
            raise FailedPreconditionError(
                f"offset {offset} is not where upload session {session.name} continues: it "
                f"has received {received} bytes, so the next chunk starts at {received}",
                reason="WRONG_OFFSET",
                metadata={"received_bytes": str(received), "offset": str(offset)},
            )
        end = received + len(chunk)
        if end > max_total:
            raise PayloadTooLargeError(
                f"the upload exceeds the limit of {max_total} bytes",
                metadata={"limit_bytes": str(max_total)},
            )
        if session.declared_bytes and end > session.declared_bytes:
            raise InvalidArgumentError(
                f"this chunk would take the upload to {end} bytes, past the "
                f"{session.declared_bytes} its metadata declared",
                field="offset",
                reason="SIZE_MISMATCH",
                metadata={"received_bytes": str(received)},
            )
        with open(self._dir(upload_id) / _DATA, "r+b") as handle:
            # Whatever a failed append left past `received` is overwritten.
            handle.truncate(received)
            handle.seek(received)
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        session = replace(
            session,
            received_bytes=end,
            last_offset=offset,
            last_sha256=digest,
            update_time=now,
            expire_time=now + self.ttl_s,
        )
        self._save(session)
        return session

    async def append(
        self, upload_id: str, offset: int, chunk: bytes, max_total: int
    ) -> UploadSession:
        """Append `chunk` at `offset` (see `AppendUpload`)."""
        if not chunk:
            raise InvalidArgumentError(
                "the chunk is empty: send 1 to 8 MiB of the artifact's bytes", field="data"
            )
        if len(chunk) > MAX_CHUNK_BYTES:
            raise PayloadTooLargeError(
                f"the chunk is {len(chunk)} bytes; one append takes at most {MAX_CHUNK_BYTES} "
                "bytes: split it",
                reason="CHUNK_TOO_LARGE",
                metadata={"limit_bytes": str(MAX_CHUNK_BYTES)},
            )
        if offset < 0:
            raise InvalidArgumentError(f"offset must not be negative, got {offset}", field="offset")
        async with self.locked(upload_id):
            with self._storage_errors():
                return await asyncio.to_thread(self._append, upload_id, offset, chunk, max_total)

    def touch(self, upload_id: str) -> UploadSession:
        """Count a commit as activity (blocking; under the lock): the session's expiry
        starts again."""
        now = self._clock()
        session = replace(self._read(upload_id), update_time=now, expire_time=now + self.ttl_s)
        self._save(session)
        return session

    def committed(self, session: UploadSession, version: str) -> UploadSession:
        """Record the commit and release the bytes (blocking; under the lock)."""
        done = replace(session, committed_version=version, update_time=self._clock())
        self._save(done)
        (self._dir(session.id) / _DATA).unlink(missing_ok=True)
        return done

    # ------------------------------------------------------------------ removing

    def _remove(self, upload_id: str) -> None:
        """Take the session out of sight at once (rename), then delete its files."""
        trash = self.root / f"{_TRASH}{upload_id}-{uuid.uuid4().hex[:8]}"
        os.rename(self._dir(upload_id), trash)
        shutil.rmtree(trash, ignore_errors=True)

    async def delete(self, upload_id: str) -> None:
        """Cancel a session: NOT_FOUND when there is none (an expired one is removed)."""
        async with self.locked(upload_id, expired_ok=True):
            await asyncio.to_thread(self._read, upload_id, expired_ok=True)
            await asyncio.to_thread(self._remove, upload_id)

    def _debris(self, entry: Path, now: float) -> bool:
        """Whether `entry` is left over from a crash: a session still being built for
        longer than the expiry, or one being removed."""
        if entry.name.startswith(_TRASH):
            return True
        if entry.name.startswith(_NEW) or entry.name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                return now - entry.stat().st_mtime > self.ttl_s
        return False

    def _sweep_one(self, upload_id: str, now: float) -> bool:
        try:
            session = self._read(upload_id, expired_ok=True)
        except (NotFoundError, ValueError, TypeError):  # vanished, or unreadable state
            directory = self._dir(upload_id)
            with contextlib.suppress(FileNotFoundError):
                if now - directory.stat().st_mtime > self.ttl_s:
                    shutil.rmtree(directory, ignore_errors=True)
                    return True
            return False
        if now < session.expire_time:
            return False
        try:
            fd = os.open(self._dir(upload_id) / _LOCK, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            if not _try_lock(fd):
                return False  # a call holds it: not idle
            if now < self._read(upload_id, expired_ok=True).expire_time:
                return False  # appended to meanwhile
            self._remove(upload_id)
            return True
        except NotFoundError:
            return False
        finally:
            os.close(fd)

    def sweep_now(self) -> int:
        """Remove expired sessions and crash debris (blocking); how many sessions went."""
        now = self._clock()
        removed = 0
        for entry in list(self.root.iterdir()):
            if self._debris(entry, now):
                shutil.rmtree(entry, ignore_errors=True)
            elif _ID.fullmatch(entry.name) and entry.name not in self._held:
                removed += self._sweep_one(entry.name, now)
        return removed

    async def sweep(self) -> int:
        return await asyncio.to_thread(self.sweep_now)

    def sweep_interval_s(self) -> float:
        """How often to sweep: a fraction of the expiry, at most a minute."""
        return min(60.0, max(0.2, self.ttl_s / 4))

    def entries(self) -> Iterator[str]:
        """The ids of the sessions on disk (for tests and operators)."""
        for entry in self.root.iterdir():
            if _ID.fullmatch(entry.name):
                yield entry.name
