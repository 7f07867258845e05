"""Asking inference replicas whether a version is ready (`ModelReady`), for the readiness
gate: one channel per replica address, opened on first use and closed with the router."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.common.channels import bearer, service_channel


class ReadinessProber:
    """`await prober(addresses, model, version)`: True when every replica that answers says
    the version is ready, and at least one answers (replicas that do not answer get no
    traffic from Envoy either: its health checks eject them)."""

    def __init__(self, timeout_s: float, token: str = "", max_message_bytes: int = 4 << 20) -> None:
        self._timeout = timeout_s
        self._metadata = bearer(token)
        self._max_message_bytes = max_message_bytes
        self._channels: dict[str, tuple[grpc.aio.Channel, opb_grpc.GRPCInferenceServiceStub]] = {}

    def _stub(self, address: str) -> opb_grpc.GRPCInferenceServiceStub:
        entry = self._channels.get(address)
        if entry is None:
            channel = service_channel(address, self._max_message_bytes)
            entry = self._channels[address] = (channel, opb_grpc.GRPCInferenceServiceStub(channel))
        return entry[1]

    async def _ready(self, address: str, model: str, version: int) -> bool | None:
        try:
            reply = await self._stub(address).ModelReady(
                opb.ModelReadyRequest(name=model, version=str(version)),
                timeout=self._timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError:
            return None
        return bool(reply.ready)

    async def __call__(self, addresses: Sequence[str], model: str, version: int) -> bool:
        answers = await asyncio.gather(*(self._ready(a, model, version) for a in addresses))
        answered = [a for a in answers if a is not None]
        return bool(answered) and all(answered)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close(None)
