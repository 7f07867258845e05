"""`modelhub.rest.v1.InferenceRest`: the Open Inference Protocol's REST API, reached
through Envoy's transcoder (docs/rest.md). Request and answer bodies are the protocol's
exact bytes (`google.api.HttpBody`); the calls share everything else with the gRPC
servicer (`api.InferenceServicer.infer`: routing headers, metrics, events).

Errors are domain exceptions like everywhere: Envoy maps their gRPC status to the HTTP
status (400, 404, 429, 503, 504, 401/403) and rewrites the body to `{"error": "…"}`.
"""

from __future__ import annotations

from dataclasses import replace

import grpc
from google.api import httpbody_pb2

from modelhub.api.oip import rest_pb2
from modelhub.api.oip import rest_pb2_grpc as rest_grpc
from modelhub.common.errors import FailedPreconditionError
from modelhub.common.rest import JSON, empty_body, json_body, message_dict
from modelhub.inference import api, convert, rest, routing
from modelhub.inference.request import InferRequest
from modelhub.inference.service import InferenceService
from modelhub.inference.settings import REQUEST_ENVELOPE_BYTES

SERVICE_NAME = "modelhub.rest.v1.InferenceRest"
BINARY = "application/octet-stream"


def _reference(request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """The (model, version) a call is for: Envoy's routing decision, else the path's."""
    return routing.model_reference(request.model_name, request.model_version, api.route_of(context))


class InferenceRestServicer(rest_grpc.InferenceRestServicer):
    def __init__(
        self, service: InferenceService, grpc_servicer: api.InferenceServicer, max_bytes: int
    ) -> None:
        self._service = service
        self._grpc = grpc_servicer
        self._max_request_bytes = max_bytes

    async def ServerLive(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return empty_body()

    async def ServerReady(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        if not self._service.ready():
            raise FailedPreconditionError("the server is not ready")
        return empty_body()

    async def ServerMetadata(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        service = self._service
        return json_body(
            {"name": service.name, "version": service.version, "extensions": service.extensions}
        )

    async def ModelReady(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        model, version = _reference(request, context)
        ready, reason = await self._service.model_readiness(model, version)
        if not ready:
            raise FailedPreconditionError(reason)
        return empty_body()

    async def ModelMetadata(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        model, version = _reference(request, context)
        description = await self._service.model_metadata(
            model, version, may_load=self._grpc.may_load(context)
        )
        description = replace(description, name=request.model_name)
        return json_body(message_dict(convert.model_metadata(description)))

    async def ModelConfig(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        model, version = _reference(request, context)
        config = await self._service.model_config(
            model, version, may_load=self._grpc.may_load(context)
        )
        config = replace(config, name=request.model_name)
        return json_body(message_dict(convert.model_config(config).config))

    async def ModelInfer(
        self, request: rest_pb2.RestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        route = api.route_of(context)
        headers = dict(context.invocation_metadata() or ())
        limit = self._max_request_bytes + REQUEST_ENVELOPE_BYTES
        body = rest.body_bytes(request.body.data, str(headers.get("content-encoding", "")), limit)
        header_length = headers.get(rest.HEADER_LENGTH)
        decoded: list[rest.RestInfer] = []

        def decode() -> InferRequest:
            call = rest.parse_infer(
                body,
                None if header_length is None else str(header_length),
                request.model_name,
                request.model_version,
                self._max_request_bytes,
            )
            decoded.append(call)
            return call.request

        result, labels = await self._grpc.infer(context, route, decode, "")
        call = decoded[0]
        data, json_length = rest.render_infer(call, result, labels, route.request_id)
        if json_length is None:
            return httpbody_pb2.HttpBody(content_type=JSON, data=data)
        # The JSON header's length rides in the content type; Envoy's rest_errors filter
        # turns it into the Inference-Header-Content-Length header (a separate initial
        # metadata write costs a frame per request).
        return httpbody_pb2.HttpBody(
            content_type=f"{BINARY}; {rest.HEADER_LENGTH}={json_length}", data=data
        )
