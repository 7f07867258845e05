"""Server reflection serves the protos with their comments (source info), and describes
single methods: what `grpcurl describe` needs to print documented definitions."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.api.registry.v1 import registry_pb2, registry_pb2_grpc
from modelhub.common.reflection import SourceInfoPool, load_descriptor_set
from modelhub.common.server import ServiceRuntime, suite_service_names
from modelhub.common.settings import ServiceSettings

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
CREATE_MODEL = "modelhub.registry.v1.RegistryService.CreateModel"
CREATE_MODEL_COMMENT = "Creates a model (a named container of versions)."


@pytest.fixture
async def runtime() -> AsyncIterator[ServiceRuntime]:
    """A server with the inference service (unimplemented methods are enough for
    reflection) that advertises the whole suite, as the inference and front-door
    servers do."""
    rt = ServiceRuntime("test", ServiceSettings(host="127.0.0.1", port=0, metrics_port=-1), {})
    rt.add_service(
        "inference.GRPCInferenceService",
        pb_grpc.add_GRPCInferenceServiceServicer_to_server,
        pb_grpc.GRPCInferenceServiceServicer(),
    )
    rt.add_service(
        "modelhub.registry.v1.RegistryService",
        registry_pb2_grpc.add_RegistryServiceServicer_to_server,
        registry_pb2_grpc.RegistryServiceServicer(),
    )
    rt.advertise(suite_service_names())
    await rt.start()
    yield rt
    await rt.stop(0)


async def _reflect(
    address: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for response in stub.ServerReflectionInfo(iter([request])):
            return response
    raise AssertionError("no reflection response")


def _leading_comments(file: FileDescriptorProto) -> list[str]:
    return [loc.leading_comments for loc in file.source_code_info.location]


async def test_file_containing_a_method_carries_source_info(runtime: ServiceRuntime) -> None:
    response = await _reflect(
        runtime.address, reflection_pb2.ServerReflectionRequest(file_containing_symbol=CREATE_MODEL)
    )
    assert response.WhichOneof("message_response") == "file_descriptor_response"
    files = {
        f.name: f
        for f in map(
            FileDescriptorProto.FromString,
            response.file_descriptor_response.file_descriptor_proto,
        )
    }
    registry = files["modelhub/api/registry/v1/registry.proto"]
    assert f" {CREATE_MODEL_COMMENT}\n" in _leading_comments(registry)
    assert "google/protobuf/field_mask.proto" in files  # with its dependencies
    # Otherwise exactly what the generated module registers: no json_name that the .proto
    # does not set (grpcurl would print camelCase JSON).
    registry.ClearField("source_code_info")
    assert registry == FileDescriptorProto.FromString(registry_pb2.DESCRIPTOR.serialized_pb)

    missing = await _reflect(
        runtime.address,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=CREATE_MODEL + "Nope"),
    )
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    health = await _reflect(
        runtime.address,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"),
    )
    assert health.file_descriptor_response.file_descriptor_proto


async def _grpcurl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_describe_prints_comments(runtime: ServiceRuntime) -> None:
    out = await _grpcurl(runtime.address, "describe", CREATE_MODEL)
    assert f"{CREATE_MODEL} is a method:\n// {CREATE_MODEL_COMMENT}\nrpc CreateModel (" in out

    out = await _grpcurl(runtime.address, "describe", "inference.GRPCInferenceService")
    assert "// Runs inference. Inputs may be sent as typed `contents` or, faster, as" in out
    assert "// Readiness: the server can serve inference requests.\n" in out
    assert "rpc ModelInfer ( .inference.ModelInferRequest )" in out

    out = await _grpcurl(runtime.address, "describe", "inference.ModelInferRequest")
    assert "// Typed data. Leave empty when the data is in `raw_input_contents`." in out

    # A service of the suite that this server only advertises, and health (not in the set).
    out = await _grpcurl(
        runtime.address, "describe", "modelhub.router.v1.RouterService.ExplainRoute"
    )
    assert "rpc ExplainRoute (" in out
    out = await _grpcurl(runtime.address, "describe", "grpc.health.v1.Health.Check")
    assert "rpc Check ( .grpc.health.v1.HealthCheckRequest )" in out


def test_without_the_descriptor_set_reflection_still_describes_methods(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "modelhub.server"):
        files = load_descriptor_set("modelhub.common")  # a package without one
    assert files == []
    assert "make proto" in caplog.text
    suite = suite_service_names()
    pool = SourceInfoPool(files, suite)
    file = pool.FindFileContainingSymbol(CREATE_MODEL)
    assert file.name == "modelhub/api/registry/v1/registry.proto"
    proto = FileDescriptorProto()
    file.CopyToProto(proto)
    assert proto.service[0].name == "RegistryService"
    with pytest.raises(KeyError):
        pool.FindFileContainingSymbol("modelhub.registry.v1.RegistryService.Nope")
    with pytest.raises(KeyError):
        pool.FindFileContainingSymbol("no.such.Service.Method")
