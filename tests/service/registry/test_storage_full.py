"""A full (or over-quota) blob disk answers RESOURCE_EXHAUSTED / STORAGE_FULL with a message
an operator can act on, and the failed upload leaves neither a temp file, a blob nor a
version row behind; the next upload works once there is space again."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common import filestore
from modelhub.common.status import error_info
from modelhub.registry.main import RegistryApp
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub


def _failing(original: Callable[..., Any], code: int, after: int = 0) -> Callable[..., Any]:
    """`original`, except that calls past the first `after` raise OSError(code)."""
    calls = 0

    def fail(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > after:
            raise OSError(code, os.strerror(code))
        return original(*args, **kwargs)

    return fail


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        ("write", errno.ENOSPC),  # mid-stream, after the first chunk landed
        ("write", errno.EDQUOT),
        ("finish", errno.ENOSPC),  # the final flush/fsync
        ("commit", errno.ENOSPC),  # moving the blob under its digest
        ("sync", errno.ENOSPC),  # syncing the directory after the move
        ("open", errno.ENOSPC),  # no inode left for the temp file
    ],
)
async def test_a_full_disk_answers_storage_full_and_leaves_nothing(
    registry: RegistryApp,
    registry_stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    code: int,
) -> None:
    store = registry.service.blobs
    if stage == "write":
        monkeypatch.setattr(
            filestore.FileWriter, "write", _failing(filestore.FileWriter.write, code, after=1)
        )
    elif stage == "finish":
        monkeypatch.setattr(
            filestore.FileWriter, "finish", _failing(filestore.FileWriter.finish, code)
        )
    elif stage == "commit":
        monkeypatch.setattr(filestore.os, "replace", _failing(os.replace, code))
    elif stage == "sync":
        monkeypatch.setattr(filestore, "fsync_dir", _failing(filestore.fsync_dir, code))
    else:
        monkeypatch.setattr(store, "writer", _failing(store.writer, code))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        # ~160 KB in 64 KiB chunks: "write" fails mid-stream.
        await upload(registry_stub, "fraud", add_constant(1.0, features=40_000))
    error = raised.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    info = error_info(error)
    assert info is not None and info.reason == "STORAGE_FULL"
    assert info.metadata["errno"] == errno.errorcode[code]
    details = error.details() or ""
    assert "free space" in details and str(store.root) in details

    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.digests()) == []
    models = await registry_stub.ListModels(pb.ListModelsRequest())
    assert list(models.models) == []

    # Space again: the same upload goes through.
    monkeypatch.undo()
    version = await upload(registry_stub, "fraud", add_constant(1.0, features=40_000))
    assert version.version == 1


async def test_other_os_errors_stay_internal(
    registry: RegistryApp, registry_stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        filestore.FileWriter, "finish", _failing(filestore.FileWriter.finish, errno.EIO)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload(registry_stub, "fraud", add_constant(1.0))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert list(registry.service.blobs.tmp_dir.iterdir()) == []
