"""The registry's artifact store: the content-addressed file store of
`modelhub.common.filestore` (blobs by sha256, written temp → fsync → rename → fsync of the
directory, temp files flock-held so that replicas sharing the folder clean up only a crashed
writer's debris), plus what the registry adds: a full disk reported as STORAGE_FULL, and
streaming a blob to a download.

Unreferenced blobs are removed by the service under the database's blob claims (see
`RegistryStore.drop_blob`), never by this module on its own.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator, Iterator

from modelhub.common.errors import NotFoundError, ResourceExhaustedError
from modelhub.common.filestore import FileStore, read_chunks

# "No space left on device" and "Disk quota exceeded": the operator has to act, the client
# can only retry later. Every other OSError is a server fault (INTERNAL).
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class BlobStore(FileStore):
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

    async def read_chunks(self, sha256: str, chunk_size: int) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (file reads run in a worker thread)."""
        path = self.path(sha256)
        try:
            async with contextlib.aclosing(read_chunks(path, chunk_size)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except FileNotFoundError:  # raised by the open, before any piece
            raise NotFoundError(
                f"artifact sha256:{sha256} is missing from the blob store",
                reason="ARTIFACT_MISSING",
            ) from None
