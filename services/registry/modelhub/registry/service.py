"""The registry's domain service: validation and orchestration over the store and the blob
store. Transport-neutral: the gRPC servicer translates to and from these calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from modelhub.common import paging
from modelhub.common.errors import (
    DigestMismatchError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidArtifactError,
    NotFoundError,
    PayloadTooLargeError,
    RevisionCompactedError,
)
from modelhub.registry import names
from modelhub.registry.artifacts import inspect_onnx
from modelhub.registry.blobs import BlobStore
from modelhub.registry.names import RESERVED_ALIASES
from modelhub.registry.profile import validate_profile
from modelhub.registry.resources import (
    DERIVATION_METHODS,
    Alias,
    Artifact,
    Deployment,
    Derivation,
    Endpoint,
    EventType,
    Kind,
    Model,
    ModelSchema,
    ModelVersion,
    Page,
    Source,
    VersionStatus,
    WatchEvent,
)
from modelhub.registry.store.store import RegistryStore
from modelhub.registry.uploads import UploadSession, UploadSessions
from modelhub.registry.uploads import parse_name as parse_upload_name
from modelhub.registry.validation import check_evaluation, validate_deployment, validate_endpoint

log = logging.getLogger("modelhub.registry")

MAX_CHUNK = 4 * 1024 * 1024
DEFAULT_CHUNK = 1024 * 1024


@dataclass
class UploadRequest:
    """Metadata of an upload (the first message of the stream)."""

    model: str
    create_model: bool = False
    description: str = ""
    author: str = ""
    source: Source = field(default_factory=Source)
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    sha256: str = ""
    size_bytes: int = 0
    data_profile: dict[str, Any] | None = None
    aliases: list[str] = field(default_factory=list)
    derivation: Derivation | None = None
    evaluation: dict[str, Any] | None = None


class ChangeNotifier:
    """Wakes watchers when a transaction with changes commits in this process."""

    def __init__(self) -> None:
        self.revision = 0
        self._event = asyncio.Event()

    def notify(self, revision: int) -> None:
        self.revision = max(self.revision, revision)
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, after: int, seconds: float) -> None:
        if self.revision > after:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


def check_alias(alias: str, field: str) -> str:
    names.check_id(alias, "alias", field)
    if alias in RESERVED_ALIASES:
        raise InvalidArgumentError(
            f"alias {alias!r} is reserved: it always means the newest READY version",
            field=field,
        )
    return alias


Patch = dict[str, Any]


def _apply(resource: Any, patch: Patch) -> Any:
    return replace(resource, **patch) if patch else resource


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        blobs: BlobStore,
        notifier: ChangeNotifier,
        *,
        max_upload_bytes: int,
        watch_progress_s: float = 5.0,
        watch_poll_s: float = 1.0,
        claim_grace_s: float = 600.0,
        upload_session_ttl_s: float = 3600.0,
        max_upload_sessions: int = 64,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.notifier = notifier
        self.max_upload_bytes = max_upload_bytes
        self.watch_progress_s = watch_progress_s
        self.watch_poll_s = watch_poll_s
        self.claim_grace = timedelta(seconds=claim_grace_s)
        # Upload sessions live beside the blobs, where every replica sharing them sees them.
        self.uploads = UploadSessions(
            blobs.root / "uploads",
            ttl_s=upload_session_ttl_s,
            max_sessions=max_upload_sessions,
            storage_errors=blobs.storage_errors,
        )
        self._closing = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, cleanup_orphans: bool = True) -> None:
        """Remove crash debris: temp files no upload holds, expired blob claims and blobs no
        version references or live upload claims. Safe while other replicas sharing the
        blob folder and database are uploading."""
        if cleanup_orphans:
            grace = self.claim_grace.total_seconds()
            temps = await asyncio.to_thread(self.blobs.cleanup_temps, grace)
            await self.store.expire_claims(self.claim_grace)
            referenced = await self.store.referenced_digests()
            blobs = 0
            for digest in await asyncio.to_thread(lambda: list(self.blobs.digests())):
                if digest not in referenced and await self._release_blob(digest):
                    blobs += 1
            if temps or blobs:
                log.warning("removed %d unfinished uploads and %d unreferenced blobs", temps, blobs)
        revision, _ = await self.store.state()
        self.notifier.notify(revision)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_uploads())

    async def _sweep_uploads(self) -> None:
        """Remove expired upload sessions, now and then, until closed."""
        while not self._closing.is_set():
            try:
                removed = await self.uploads.sweep()
            except OSError:
                log.exception("sweeping expired upload sessions failed")
            else:
                if removed:
                    log.info("removed %d expired upload sessions", removed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.uploads.sweep_interval_s())

    def close(self) -> None:
        """End open Watch streams (watchers reconnect and resume elsewhere) and the upload
        sessions' sweeper."""
        self._closing.set()

    # ------------------------------------------------------------------------ models

    async def create_model(self, model: Model) -> Model:
        names.check_id(model.id, "model id", "model_id")
        names.check_text(model.description, "model.description")
        model = replace(
            model,
            tags=names.check_tags(model.tags, "model.tags"),
            labels=names.check_labels(model.labels, "model.labels"),
        )
        return await self.store.create_model(model)

    async def get_model(self, name: str) -> Model:
        return await self.store.get_model(names.model_id(name))

    async def list_models(
        self, page_size: int, page_token: str, name_prefix: str, tag: str, label: str = ""
    ) -> Page[Model]:
        wanted = names.label_filter(label)
        filters = {"name_prefix": name_prefix, "tag": tag, "label": label}
        after = paging.decode_str(page_token, filters)
        limit = paging.page_size(page_size)
        items, more = await self.store.list_models(limit, after, name_prefix, tag, wanted)
        token = paging.encode_token(items[-1].id, filters) if more and items else ""
        return Page(items, token)

    async def update_model(self, name: str, patch: Patch, etag: str) -> Model:
        model = names.model_id(name, "model.name")
        if "description" in patch:
            names.check_text(patch["description"], "model.description")
        if "tags" in patch:
            patch["tags"] = names.check_tags(patch["tags"], "model.tags")
        if "labels" in patch:
            patch["labels"] = names.check_labels(patch["labels"], "model.labels")
        return await self.store.update_model(model, lambda m: _apply(m, patch), etag)

    async def delete_model(self, name: str, etag: str) -> None:
        digests = await self.store.delete_model(names.model_id(name), etag)
        for digest in digests:
            await self._release_blob(digest)

    # ---------------------------------------------------------------------- versions

    def _check_upload(self, req: UploadRequest) -> UploadRequest:
        names.check_id(req.model, "model id", "metadata.parent")
        names.check_text(req.description, "metadata.description")
        names.check_text(req.author, "metadata.author", 256)
        for part in ("run_id", "dataset", "commit", "uri"):
            names.check_text(getattr(req.source, part), f"metadata.source.{part}", 2048)
        if req.sha256:
            names.check_sha256(req.sha256, "metadata.sha256")
        if req.size_bytes < 0:
            raise InvalidArgumentError(
                "size_bytes must not be negative", field="metadata.size_bytes"
            )
        if req.size_bytes > self.max_upload_bytes:
            raise PayloadTooLargeError(
                f"the artifact is {req.size_bytes} bytes; this registry accepts at most "
                f"{self.max_upload_bytes} bytes",
                metadata={"limit_bytes": str(self.max_upload_bytes)},
            )
        if req.data_profile is not None:
            validate_profile(req.data_profile, "metadata.data_profile")
        aliases = [check_alias(a, "metadata.aliases") for a in req.aliases]
        if req.derivation is not None:
            if req.derivation.method not in DERIVATION_METHODS:
                raise InvalidArgumentError(
                    f"unknown derivation method {req.derivation.method!r}: one of "
                    f"{', '.join(DERIVATION_METHODS)}",
                    field="metadata.derivation.method",
                )
            names.parse_version_name(req.derivation.parent, "metadata.derivation.parent")
        if req.evaluation is not None:
            if req.derivation is None:
                raise InvalidArgumentError(
                    "an evaluation report describes a derivative: set metadata.derivation too",
                    field="metadata.evaluation",
                )
            check_evaluation(req.evaluation, "metadata.evaluation")
        return replace(
            req,
            tags=names.check_tags(req.tags, "metadata.tags"),
            metadata=names.check_metadata(req.metadata, "metadata.metadata"),
            aliases=list(dict.fromkeys(aliases)),
        )

    async def _admit_upload(self, req: UploadRequest) -> UploadRequest:
        """The checks an upload passes before any byte is read: the metadata, the declared
        size, a derivative's parent (READY) and the model (exists, or `create_model`)."""
        req = self._check_upload(req)
        if req.derivation is not None:
            # FAILED_PRECONDITION before reading any byte: derivatives of READY versions only.
            parent = await self.get_version(req.derivation.parent, full=False)
            if parent.status != VersionStatus.READY:
                raise FailedPreconditionError(
                    f"{req.derivation.parent} is {parent.status.value}: derivatives are "
                    "registered only for READY versions",
                    reason="PARENT_NOT_READY",
                    metadata={"parent": req.derivation.parent},
                )
            req = replace(
                req,
                derivation=replace(
                    req.derivation,
                    parent=names.version_name(parent.model, parent.version),
                    parent_sha256=parent.artifact.sha256,
                ),
            )
        if not req.create_model:
            # NOT_FOUND before reading any byte.
            try:
                await self.store.get_model(req.model)
            except NotFoundError as exc:
                raise NotFoundError(
                    f"{exc.message}: create it first, or set create_model in the upload metadata",
                    metadata=exc.metadata,
                ) from None
        return req

    async def upload_version(
        self, req: UploadRequest, chunks: AsyncIterator[bytes]
    ) -> ModelVersion:
        """Store an artifact and create its version. All or nothing: on any failure or
        cancellation neither a version row nor a blob remains."""
        req = await self._admit_upload(req)
        with self.blobs.storage_errors():
            writer = self.blobs.writer(max_bytes=self.max_upload_bytes, label="the upload")
        committed = False
        try:
            with self.blobs.storage_errors():
                async for chunk in chunks:
                    writer.write(chunk)
                await asyncio.to_thread(writer.finish)
            if writer.size == 0:
                raise InvalidArtifactError("the upload carried no artifact bytes")
            if req.size_bytes and writer.size != req.size_bytes:
                raise InvalidArgumentError(
                    f"received {writer.size} bytes but the metadata declared "
                    f"{req.size_bytes}: the upload is incomplete or the size is wrong",
                    field="metadata.size_bytes",
                    reason="SIZE_MISMATCH",
                )
            if req.sha256 and writer.sha256 != req.sha256:
                raise DigestMismatchError(
                    f"the received bytes have sha256 {writer.sha256}, not the declared "
                    f"{req.sha256}: the artifact was corrupted in transit or the digest is "
                    "wrong",
                    field="metadata.sha256",
                    metadata={"received": writer.sha256, "declared": req.sha256},
                )
            schema: ModelSchema = await asyncio.to_thread(inspect_onnx, writer.temp_path)
            digest = writer.sha256
            draft = ModelVersion(
                model=req.model,
                version=0,
                uid="",
                artifact=Artifact(sha256=digest, size_bytes=writer.size, format="onnx"),
                schema=schema,
                description=req.description,
                author=req.author,
                source=req.source,
                metadata=req.metadata,
                tags=req.tags,
                data_profile=req.data_profile,
                derivation=req.derivation,
                evaluation=req.evaluation,
            )
            # The claim keeps every replica's cleanup and deletes off this digest until the
            # version row (which releases it) is committed.
            claim = await self.store.claim_blob(digest)
            try:
                with self.blobs.storage_errors():
                    await asyncio.to_thread(self.blobs.commit, writer)
                committed = True
                version = await self.store.add_version(
                    draft, req.create_model, req.aliases, claim=claim
                )
            except BaseException:
                # Also when the commit itself failed: it may have failed after the rename
                # (syncing the directory), leaving the blob without a version.
                await self._release_blob(digest, claim)
                raise
            log.info(
                "stored %s",
                names.version_name(version.model, version.version),
                extra={"fields": {"sha256": digest, "size_bytes": writer.size}},
            )
            return version
        finally:
            if not committed:
                writer.discard()

    # --------------------------------------------------------------- upload sessions

    async def start_upload(self, req: UploadRequest, metadata: bytes) -> UploadSession:
        """Open an upload session after the checks a streamed upload makes before its first
        byte. `metadata` is the request's metadata as the transport encodes it: stored as
        it is, and handed back (to `decode`) at commit."""
        req = await self._admit_upload(req)
        return await self.uploads.create(metadata, req.size_bytes)

    async def append_upload(self, name: str, offset: int, chunk: bytes) -> UploadSession:
        upload_id = parse_upload_name(name)
        return await self.uploads.append(upload_id, offset, chunk, self.max_upload_bytes)

    async def get_upload(self, name: str) -> UploadSession:
        return await self.uploads.get(parse_upload_name(name))

    async def cancel_upload(self, name: str) -> None:
        await self.uploads.delete(parse_upload_name(name))

    async def commit_upload(
        self, name: str, decode: Callable[[bytes], UploadRequest]
    ) -> ModelVersion:
        """Create the version from a session's bytes, through `upload_version` (the same
        limit, size and sha256 checks and ONNX validation). A failed commit leaves the
        session as it was (append the missing bytes, or cancel it); a repeated commit
        answers the version the first one created."""
        upload_id = parse_upload_name(name)
        async with self.uploads.locked(upload_id):
            with self.blobs.storage_errors():
                session = await asyncio.to_thread(self.uploads.touch, upload_id)
            if session.committed_version:
                return await self.get_version(session.committed_version)
            req = decode(session.metadata)
            if req.size_bytes and session.received_bytes != req.size_bytes:
                raise InvalidArgumentError(
                    f"upload session {session.name} has received {session.received_bytes} "
                    f"bytes but its metadata declared {req.size_bytes}: append the rest "
                    "before committing",
                    field="metadata.size_bytes",
                    reason="SIZE_MISMATCH",
                    metadata={"received_bytes": str(session.received_bytes)},
                )
            version = await self.upload_version(req, self.uploads.read_chunks(session))
            name = names.version_name(version.model, version.version)
            try:
                with self.blobs.storage_errors():
                    await asyncio.to_thread(self.uploads.committed, session, name)
            except Exception:  # the version exists: a retried commit would add another
                log.exception("could not record the commit of %s as %s", session.name, name)
            return version

    async def _release_blob(self, digest: str, claim: str = "") -> bool:
        """Delete a blob unless a version or an upload in progress (on any replica) still
        uses it; `claim` is the caller's own, released. True when deleted."""
        return await self.store.drop_blob(
            digest, lambda: self.blobs.delete(digest), self.claim_grace, claim
        )

    async def get_version(self, name: str, full: bool = True) -> ModelVersion:
        return await self.store.get_version(names.parse_version_name(name), full)

    async def resolve_version(self, reference: str, full: bool = True) -> ModelVersion:
        return await self.store.get_version(names.parse_reference(reference), full)

    async def list_versions(
        self,
        parent: str,
        page_size: int,
        page_token: str,
        status: VersionStatus | None,
        alias: str,
        tag: str,
        full: bool,
    ) -> Page[ModelVersion]:
        model = names.model_id(parent, "parent")
        if alias and alias not in RESERVED_ALIASES:
            names.check_id(alias, "alias", "alias")
        filters = {"model": model, "status": status, "alias": alias, "tag": tag}
        before = paging.decode_int(page_token, filters)
        limit = paging.page_size(page_size)
        items, more = await self.store.list_versions(model, limit, before, status, alias, tag, full)
        token = paging.encode_token(items[-1].version, filters) if more and items else ""
        return Page(items, token)

    async def update_version(self, name: str, patch: Patch, etag: str) -> ModelVersion:
        ref = names.parse_version_name(name, "version.name")
        if ref.version is None:
            raise InvalidArgumentError(
                "update a version by number (models/{model}/versions/{n}), not by alias",
                field="version.name",
            )
        if "description" in patch:
            names.check_text(patch["description"], "version.description")
        if "author" in patch:
            names.check_text(patch["author"], "version.author", 256)
        if "tags" in patch:
            patch["tags"] = names.check_tags(patch["tags"], "version.tags")
        if "metadata" in patch:
            patch["metadata"] = names.check_metadata(patch["metadata"], "version.metadata")
        if patch.get("data_profile") is not None:
            validate_profile(patch["data_profile"], "version.data_profile")
        if "status" in patch and patch["status"] is None:
            raise InvalidArgumentError("status must be READY or ARCHIVED", field="version.status")
        return await self.store.update_version(
            ref.model, ref.version, lambda v: _apply(v, patch), etag
        )

    async def archive_version(self, name: str, etag: str) -> ModelVersion:
        return await self.update_version(name, {"status": VersionStatus.ARCHIVED}, etag)

    async def delete_version(self, name: str, etag: str) -> None:
        ref = names.parse_version_name(name)
        if ref.version is None:
            raise InvalidArgumentError(
                "delete a version by number (models/{model}/versions/{n}), not by alias",
                field="name",
            )
        digest = await self.store.delete_version(ref.model, ref.version, etag)
        await self._release_blob(digest)

    async def download(
        self, name: str, chunk_size: int
    ) -> tuple[ModelVersion, AsyncIterator[bytes]]:
        if chunk_size < 0 or chunk_size > MAX_CHUNK:
            raise InvalidArgumentError(
                f"chunk_size must be between 1 and {MAX_CHUNK} (0 = {DEFAULT_CHUNK})",
                field="chunk_size",
            )
        version = await self.store.get_version(names.parse_version_name(name), full=False)
        return version, self.blobs.read_chunks(version.artifact.sha256, chunk_size or DEFAULT_CHUNK)

    # ----------------------------------------------------------------------- aliases

    async def set_alias(self, parent: str, alias: str, version: int) -> Alias:
        model = names.model_id(parent, "parent")
        check_alias(alias, "alias")
        if version < 1:
            raise InvalidArgumentError("version must be 1 or more", field="version")
        return await self.store.set_alias(model, alias, version)

    async def delete_alias(self, name: str) -> None:
        model, alias = names.parse_alias_name(name)
        await self.store.delete_alias(model, alias)

    async def list_aliases(self, parent: str) -> list[Alias]:
        return await self.store.list_aliases(names.model_id(parent, "parent"))

    # ------------------------------------------------------------------- deployments

    async def create_deployment(self, dep: Deployment) -> Deployment:
        return await self.store.create_deployment(validate_deployment(dep))

    async def get_deployment(self, name: str) -> Deployment:
        return await self.store.get_deployment(names.deployment_id(name))

    async def list_deployments(
        self, page_size: int, page_token: str, model: str
    ) -> Page[Deployment]:
        model_id = names.model_id(model, "model") if model else ""
        filters = {"model": model_id}
        after = paging.decode_str(page_token, filters)
        items, more = await self.store.list_deployments(
            paging.page_size(page_size), after, model_id
        )
        return Page(items, paging.encode_token(items[-1].id, filters) if more and items else "")

    async def update_deployment(self, name: str, patch: Patch, etag: str) -> Deployment:
        dep_id = names.deployment_id(name, "deployment.name")
        return await self.store.update_deployment(
            dep_id, lambda d: validate_deployment(_apply(d, patch)), etag
        )

    async def delete_deployment(self, name: str, etag: str) -> None:
        await self.store.delete_deployment(names.deployment_id(name), etag)

    # --------------------------------------------------------------------- endpoints

    async def create_endpoint(self, ep: Endpoint) -> Endpoint:
        return await self.store.create_endpoint(validate_endpoint(ep))

    async def get_endpoint(self, name: str) -> Endpoint:
        return await self.store.get_endpoint(names.endpoint_id(name))

    async def list_endpoints(self, page_size: int, page_token: str) -> Page[Endpoint]:
        filters: dict[str, str] = {}
        after = paging.decode_str(page_token, filters)
        items, more = await self.store.list_endpoints(paging.page_size(page_size), after)
        return Page(items, paging.encode_token(items[-1].id, filters) if more and items else "")

    async def update_endpoint(self, name: str, patch: Patch, etag: str) -> Endpoint:
        ep_id = names.endpoint_id(name, "endpoint.name")
        return await self.store.update_endpoint(
            ep_id, lambda e: validate_endpoint(_apply(e, patch)), etag
        )

    async def delete_endpoint(self, name: str, etag: str) -> None:
        await self.store.delete_endpoint(names.endpoint_id(name), etag)

    # ------------------------------------------------------------------------- watch

    async def watch(
        self,
        start_revision: int,
        kinds: set[Kind],
        clock: Callable[[], float] = time.monotonic,
    ) -> AsyncIterator[WatchEvent]:
        """Snapshot-then-follow (start 0) or replay-then-follow (start N) change feed."""
        if start_revision < 0:
            raise InvalidArgumentError(
                "start_revision must be 0 (snapshot) or a revision seen before",
                field="start_revision",
            )

        def wanted(event: WatchEvent) -> bool:
            return not kinds or event.kind in kinds

        if start_revision == 0:
            revision, events = await self.store.snapshot()
            for event in events:
                if wanted(event):
                    yield event
            yield WatchEvent(EventType.SYNCED, revision)
        else:
            current, compacted = await self.store.state()
            self._check_not_compacted(start_revision, compacted, current)
            self._check_not_ahead(start_revision, current)
            revision = start_revision
        last_sent = clock()
        batch = 500
        while not self._closing.is_set():
            events, compacted = await self.store.changes_after(revision, batch)
            if events and events[0].revision != revision + 1:
                self._check_not_compacted(revision, compacted, events[-1].revision)
            for event in events:
                revision = event.revision
                if wanted(event):
                    yield event
                    last_sent = clock()
            if len(events) == batch:
                continue
            if clock() - last_sent >= self.watch_progress_s:
                # The database may have been restored under a running registry: a watcher
                # past its head would otherwise wait, silent, for revisions it already saw.
                current, _ = await self.store.state()
                self._check_not_ahead(revision, current)
                yield WatchEvent(EventType.PROGRESS, revision)
                last_sent = clock()
            closing = asyncio.ensure_future(self._closing.wait())
            waiting = asyncio.ensure_future(
                self.notifier.wait(revision, min(self.watch_poll_s, self.watch_progress_s))
            )
            try:
                await asyncio.wait({closing, waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                waiting.cancel()

    @staticmethod
    def _check_not_ahead(revision: int, current: int) -> None:
        if revision > current:
            # Same remedy as compacted history (re-list from 0), hence the same error class;
            # the reason tells the two apart.
            raise RevisionCompactedError(
                f"revision {revision} is ahead of the registry's current revision {current} "
                "(was its database restored from a backup?): watch again from revision 0 "
                "to re-list",
                reason="REVISION_AHEAD",
                metadata={"current_revision": str(current), "requested_revision": str(revision)},
            )

    @staticmethod
    def _check_not_compacted(revision: int, compacted: int, current: int) -> None:
        if revision < compacted:
            raise RevisionCompactedError(
                f"revision {revision} is no longer kept (history starts after {compacted}, "
                f"current is {current}): watch again from revision 0 to re-list",
                metadata={"compacted_revision": str(compacted), "current_revision": str(current)},
            )
