"""Helpers for registry service tests."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc


async def upload_requests(
    metadata: pb.UploadMetadata, data: bytes, chunk: int = 64 * 1024
) -> AsyncIterator[pb.UploadModelVersionRequest]:
    yield pb.UploadModelVersionRequest(metadata=metadata)
    for offset in range(0, len(data), chunk):
        yield pb.UploadModelVersionRequest(chunk=data[offset : offset + chunk])


async def upload(
    stub: registry_pb2_grpc.RegistryServiceStub,
    model: str,
    data: bytes,
    *,
    create_model: bool = True,
    declare_digest: bool = True,
    **fields: object,
) -> pb.ModelVersion:
    metadata = pb.UploadMetadata(
        parent=f"models/{model}",
        create_model=create_model,
        sha256=hashlib.sha256(data).hexdigest() if declare_digest else "",
        **fields,  # type: ignore[arg-type]
    )
    return await stub.UploadModelVersion(upload_requests(metadata, data))


async def download(
    stub: registry_pb2_grpc.RegistryServiceStub, name: str
) -> tuple[pb.ModelVersion, bytes]:
    header: pb.ModelVersion | None = None
    parts: list[bytes] = []
    async for message in stub.DownloadModelVersion(pb.DownloadModelVersionRequest(name=name)):
        if message.HasField("version"):
            header = message.version
        else:
            parts.append(message.chunk)
    assert header is not None
    return header, b"".join(parts)
