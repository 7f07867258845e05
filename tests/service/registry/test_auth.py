"""The registry with authentication on: roles gate reads, publishing and admin calls."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.settings import AuthSettings
from modelhub.registry.main import RegistryApp
from tests.conftest import registry_settings
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload_requests


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_roles(database_url: str, tmp_path: Path) -> None:
    auth = AuthSettings(tokens="r:reader,p:publisher,a:admin")
    app = RegistryApp(registry_settings(database_url, tmp_path, auth=auth))
    await app.start()

    def bearer(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListModels(pb.ListModelsRequest())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await stub.ListModels(pb.ListModelsRequest(), metadata=bearer("r"))

            metadata = pb.UploadMetadata(parent="models/m", create_model=True)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.UploadModelVersion(
                    upload_requests(metadata, add_constant()), metadata=bearer("r")
                )
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            version = await stub.UploadModelVersion(
                upload_requests(metadata, add_constant()), metadata=bearer("p")
            )
            assert version.version == 1
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.DeleteModel(pb.DeleteModelRequest(name="models/m"), metadata=bearer("p"))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            stream = stub.Watch(pb.WatchRequest(), metadata=bearer("bogus"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stream.read()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await stub.DeleteModel(pb.DeleteModelRequest(name="models/m"), metadata=bearer("a"))
    finally:
        await app.stop(2)
