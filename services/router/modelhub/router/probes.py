"""Asking inference replicas whether a version is ready (`ModelReady`), for the readiness
gate, over the router's replica channels (`upstream.Replicas`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.common.channels import bearer
from modelhub.router.upstream import Replicas


class ReadinessProber:
    """`await prober(addresses, model, version)`: True when every replica that answers says
    the version is ready, and at least one answers (replicas that do not answer get no
    traffic from Envoy either: its health checks eject them)."""

    def __init__(self, replicas: Replicas, timeout_s: float, token: str = "") -> None:
        self._replicas = replicas
        self._timeout = timeout_s
        self._metadata = bearer(token)

    async def _ready(self, address: str, model: str, version: int) -> bool | None:
        try:
            reply = await self._replicas.stubs(address).oip.ModelReady(
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
