"""Starting the whole suite (registry, monitor, inference, router, Envoy) as real processes
for end-to-end tests, on ephemeral ports, through the same code as `make up`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from modelhub.devstack.stack import (
    Ports,
    ServiceSpec,
    Stack,
    StackConfig,
    register_demo,
    start_suite,
)

ADMIN_TOKEN = "e2e-admin-token"
PUBLISHER_TOKEN = "e2e-publisher-token"


@dataclass
class Suite:
    stack: Stack
    config: StackConfig
    specs: list[ServiceSpec]

    @property
    def ports(self) -> Ports:
        return self.config.ports

    @property
    def front(self) -> str:
        return f"127.0.0.1:{self.ports.envoy}"

    def spec(self, name: str) -> ServiceSpec:
        return next(s for s in self.specs if s.name == name)


@contextlib.asynccontextmanager
async def running_suite(
    var: Path,
    *,
    inference_instances: int = 1,
    auth: bool = False,
    otlp: str = "",
    mtls: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Suite]:
    """`mtls`: TLS on the front door and mutual TLS behind it (`make up --mtls`); `env`:
    more settings for every service."""
    extra = env or {}
    env = {"MODELHUB_INFERENCE_EVENT_SAMPLE_RATE": "1.0"}
    if auth:
        env |= {
            "MODELHUB_AUTH_TOKENS": f"{ADMIN_TOKEN}:admin:ops,{PUBLISHER_TOKEN}:publisher:ci",
            "MODELHUB_AUTH_ANONYMOUS_ROLE": "reader",
            "MODELHUB_ROUTER_MONITOR_TOKEN": PUBLISHER_TOKEN,
            "MODELHUB_INFERENCE_MONITOR_TOKEN": PUBLISHER_TOKEN,
        }
    if otlp:
        env |= {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
    config = StackConfig(
        var=var,
        ports=Ports.free(),
        inference_instances=inference_instances,
        env=env | extra,
        envoy_otlp=otlp,
        tls=mtls,
        mtls=mtls,
    )
    stack = Stack(var, config.service_tls())
    try:
        specs = await start_suite(stack, config)
        await register_demo(
            f"127.0.0.1:{config.ports.registry}",
            token=ADMIN_TOKEN if auth else None,
            tls=config.service_tls(),
        )
        yield Suite(stack, config, specs)
    finally:
        await stack.stop()
