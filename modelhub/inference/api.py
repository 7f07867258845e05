"""`inference.GRPCInferenceService` (Open Inference Protocol / KServe v2) servicer:
protobuf → `InferenceService` → protobuf, and the per-request duration metric."""

from __future__ import annotations

import asyncio
import time

import grpc
from opentelemetry import trace

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.common.auth import Role
from modelhub.common.errors import ModelHubError
from modelhub.common.status import status_code_for
from modelhub.inference import convert
from modelhub.inference.metrics import InferenceMetrics
from modelhub.inference.request import InferRequest
from modelhub.inference.service import InferenceService

SERVICE_NAME = "inference.GRPCInferenceService"

ROLES: dict[str, Role] = {
    "ServerLive": Role.READER,
    "ServerReady": Role.READER,
    "ServerMetadata": Role.READER,
    "ModelReady": Role.READER,
    "ModelMetadata": Role.READER,
    "ModelInfer": Role.READER,
}

_CODE_NAMES: dict[type, str] = {}


def _code_name(exc: ModelHubError) -> str:
    name = _CODE_NAMES.get(type(exc))
    if name is None:
        code = status_code_for(type(exc)) or grpc.StatusCode.INTERNAL
        name = _CODE_NAMES[type(exc)] = code.name
    return name


# Set by the router on requests it forwards for an endpoint variant.
VARIANT_PARAMETER = "modelhub.variant"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Thin edge over `InferenceService`; errors are domain exceptions that the edge
    interceptor maps to status codes."""

    def __init__(
        self, service: InferenceService, metrics: InferenceMetrics, max_request_bytes: int
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._max_request_bytes = max_request_bytes

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._service.ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        service = self._service
        return pb.ServerMetadataResponse(
            name=service.name, version=service.version, extensions=service.extensions
        )

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        ready = await self._service.model_ready(request.name, request.version)
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        description = await self._service.model_metadata(request.name, request.version)
        return convert.model_metadata(description)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        start = time.perf_counter()
        model = version = ""  # requests that never reached a version are counted unlabelled
        code = "OK"
        domain: InferRequest | None = None
        try:
            domain = convert.infer_request(request, self._max_request_bytes)
            span = trace.get_current_span()
            result = await self._service.infer(
                domain, context.time_remaining(), span.get_span_context()
            )
            model, version = result.model, str(result.version)
            if span.is_recording():
                span.set_attribute("modelhub.model", model)
                span.set_attribute("modelhub.version", version)
            return convert.infer_response(request, result)
        except ModelHubError as exc:
            code = _code_name(exc)
            if domain is not None and domain.served_version is not None:
                model, version = domain.model, str(domain.served_version)
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            variant = request.parameters.get(VARIANT_PARAMETER)
            self._metrics.observe_request(
                model,
                version,
                variant.string_param if variant is not None else "",
                code,
                time.perf_counter() - start,
            )
