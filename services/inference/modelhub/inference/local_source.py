"""A model source over a local directory of ONNX files, for serving without a registry
(development, benchmarks, air-gapped hosts).

Layouts, all read-only: `ROOT/<model>/<version>/model.onnx`, `ROOT/<model>/<version>.onnx`
and `ROOT/<model>.onnx` (version 1). The default version is the highest number; there are
no aliases. With `deploy_all`, the watch feed "deploys" every model's latest version, so
the server loads them all at start, as a Triton model repository would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from modelhub.common.errors import NotFoundError
from modelhub.common.names import is_decimal
from modelhub.common.onnx_schema import read_schema
from modelhub.inference.source import (
    DEFAULT_REFERENCE,
    LATEST,
    DeploymentSpec,
    EventType,
    ResourceKind,
    SourceEvent,
)
from modelhub.inference.spec import VersionInfo


def _entry_name(model: str) -> bool:
    """Whether a requested model name can only name an entry of the root directory: not a
    path (`../x`, `/abs`, `a/b`), and short enough for a file name (255 bytes with
    `.onnx`). Any other name is no model here (NOT_FOUND)."""
    return (
        model not in ("", ".", "..")
        and not any(c in model for c in "/\\\0")
        and len(model.encode("utf-8", "surrogatepass")) <= 250
    )


class DirectoryModelSource:
    """`ModelSource` over a directory (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        deploy_all: bool = True,
        chunk_size: int = 1 << 20,
    ) -> None:
        self.root = Path(root)
        self._deploy_all = deploy_all
        self._chunk_size = chunk_size
        # (path, size, mtime) → VersionInfo: hashing is paid once per file change.
        self._infos: dict[tuple[str, int, int], VersionInfo] = {}

    def _versions(self, model: str) -> dict[int, Path]:
        found: dict[int, Path] = {}
        if not _entry_name(model):  # a path elsewhere, or too long for a file name
            return found
        flat = self.root / f"{model}.onnx"
        if flat.is_file():
            found[1] = flat
        folder = self.root / model
        if folder.is_dir():
            for entry in folder.iterdir():
                stem = entry.name.removesuffix(".onnx")
                if not is_decimal(stem):
                    continue
                if entry.is_dir() and (entry / "model.onnx").is_file():
                    found[int(stem)] = entry / "model.onnx"
                elif entry.is_file() and entry.name.endswith(".onnx"):
                    found[int(stem)] = entry
        return found

    def models(self) -> list[str]:
        names = set()
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.is_file() and entry.name.endswith(".onnx"):
                    names.add(entry.name.removesuffix(".onnx"))
                elif entry.is_dir() and self._versions(entry.name):
                    names.add(entry.name)
        return sorted(names)

    def _describe(self, model: str, version: int, path: Path) -> VersionInfo:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        info = self._infos.get(key)
        if info is None:
            data = path.read_bytes()
            info = VersionInfo(
                model=model,
                version=version,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                schema=read_schema(data),
            )
            self._infos[key] = info
        return info

    def _resolve_sync(self, model: str, reference: str) -> VersionInfo:
        versions = self._versions(model)
        if not versions:
            raise NotFoundError(
                f"model {model!r} not found in {self.root}", metadata={"model": model}
            )
        if reference in (DEFAULT_REFERENCE, LATEST):
            version = max(versions)
        elif is_decimal(reference) and int(reference) in versions:
            version = int(reference)
        else:
            raise NotFoundError(
                f"model {model!r} has no version {reference!r} in {self.root}",
                metadata={"model": model, "version": reference},
            )
        return self._describe(model, version, versions[version])

    async def resolve(self, model: str, reference: str) -> VersionInfo:
        return await asyncio.to_thread(self._resolve_sync, model, reference)

    async def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        path = self._versions(info.model).get(info.version)
        if path is None:
            raise NotFoundError(f"model version {info.model}/{info.version} disappeared")
        with path.open("rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, self._chunk_size):
                yield chunk

    async def watch(self, start_revision: int) -> AsyncIterator[SourceEvent]:
        if start_revision == 0:
            if self._deploy_all:
                for model in await asyncio.to_thread(self.models):
                    # The server's settings, the newest version.
                    spec = DeploymentSpec(id=model, model=model)
                    yield SourceEvent(
                        EventType.PUT, 1, ResourceKind.DEPLOYMENT, spec.name, model, spec
                    )
            yield SourceEvent(EventType.SYNCED, 1)
        # A directory has no change feed: stay connected and quiet.
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None
