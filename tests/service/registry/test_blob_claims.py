"""Blob claims: an upload's blob is protected from deletes and cleanups (on any replica)
between moving into place and its version insert; a dead upload's claim expires."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.registry.main import RegistryApp
from modelhub.registry.service import RegistryService
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload


def _place(service: RegistryService, data: bytes) -> str:
    writer = service.blobs.writer()
    writer.write(data)
    writer.finish()
    service.blobs.commit(writer)
    return hashlib.sha256(data).hexdigest()


async def test_a_claimed_blob_survives_deletes_and_cleanup_until_it_expires(
    registry: RegistryApp,
) -> None:
    service = registry.service
    digest = _place(service, b"committed by another replica, version row not yet inserted")
    await service.store.claim_blob(digest)
    assert await service._release_blob(digest) is False
    await service.start()  # a replica starting: cleanup
    assert service.blobs.exists(digest)
    # The upload died: its claim expires and the next cleanup removes the blob.
    assert await service.store.expire_claims(timedelta(0)) == 1
    await service.start()
    assert not service.blobs.exists(digest)
    # Releasing one's own claim deletes the unreferenced blob at once.
    digest = _place(service, b"x")
    claim = await service.store.claim_blob(digest)
    assert await service._release_blob(digest, claim) is True
    assert not service.blobs.exists(digest)


async def test_the_version_insert_releases_the_claim(
    registry: RegistryApp, registry_stub: registry_pb2_grpc.RegistryServiceStub
) -> None:
    data = add_constant(7.0)
    version = await upload(registry_stub, "fraud", data)
    digest = version.artifact.sha256
    # No claim left: deleting the version removes the blob at once.
    assert await registry.service.store.expire_claims(timedelta(0)) == 0
    await registry_stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name=version.name))
    assert not registry.service.blobs.exists(digest)
