"""A promotion to a deployed version switches Envoy's traffic only once inference reports
the new version ready: meanwhile the variant keeps answering from its current version, at
once, and the router's configuration for Envoy keeps naming it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.inference.main import InferenceApp
from modelhub.inference.settings import InferenceSettings
from modelhub.router.table import Selector
from tests.service.router.conftest import FrontDoor, FrontDoorFactory
from tests.service.router.helpers import create_endpoint, output, params, wait_for

Stub = registry_pb2_grpc.RegistryServiceStub


class HoldLoads:
    """Holds the warm-up runs of chosen versions (session names `model/version…`)."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = threading.Event()
        self.entered = threading.Event()

    def __call__(self, name: str, run: Callable[..., Any]) -> Callable[..., Any]:
        if not name.startswith(self.held):
            return run

        def gated(outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> Any:
            self.entered.set()
            self.release.wait(timeout=30)
            return run(outputs, feeds)

        return gated


async def routed_version(door: FrontDoor) -> int:
    """The version the router's table (and so Envoy's routes) sends variant `champion` to."""
    answer = await door.clients.router.ExplainRoute(
        pb.ExplainRouteRequest(endpoint="endpoints/e", key="anyone")
    )
    return int(answer.variant.version)


async def test_promotion_waits_for_the_new_version_to_be_ready(
    registry_api: Stub, registry_address: str, front_doors: FrontDoorFactory, tmp_path: Path
) -> None:
    hold = HoldLoads("m/3")
    registry = registry_api  # model m, versions 1-3: y = x + version
    await registry.SetAlias(rpb.SetAliasRequest(parent="models/m", alias="champion", version=1))
    deployment = await registry.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment_id="m",
            deployment=rpb.Deployment(
                model="models/m", versions=[rpb.VersionSelector(alias="champion")]
            ),
        )
    )
    settings = InferenceSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=-1,
        registry_address=registry_address,
        cache_dir=str(tmp_path / "held-cache"),
        grace_period_s=0.5,
        warmup=True,
    )
    inference = InferenceApp(settings, run_hook=hold)
    await inference.start()
    try:
        champion = rpb.Variant(
            name="champion",
            model="models/m",
            selector=rpb.VersionSelector(alias="champion"),
            weight=1,
        )
        await create_endpoint(registry, "e", [champion])
        door = await front_doors(backends=[inference.address])
        clients = door.clients
        first = await clients.infer("e")
        assert (first.model_version, params(first)["modelhub.variant"]) == ("1", "champion")
        assert await routed_version(door) == 1

        # Promote: the deployment now keeps version 3 loaded and the alias points at it.
        await registry.UpdateDeployment(
            rpb.UpdateDeploymentRequest(
                deployment=rpb.Deployment(
                    name="deployments/m",
                    versions=[
                        rpb.VersionSelector(alias="champion"),
                        rpb.VersionSelector(version=3),
                    ],
                    etag=deployment.etag,
                ),
                update_mask=FieldMask(paths=["versions"]),
            )
        )
        assert await asyncio.to_thread(hold.entered.wait, 10)  # version 3 is warming up
        await registry.SetAlias(rpb.SetAliasRequest(parent="models/m", alias="champion", version=3))
        router = door.router
        await wait_for(
            lambda: (
                router.watch.state is not None
                and router.watch.state.resolve("m", Selector(alias="champion")) == 3
            )
        )
        writes = router.writer.writes
        # While version 3 warms up, the variant keeps answering from version 1, at once,
        # and the table written for Envoy keeps naming version 1.
        for _ in range(10):
            response = await asyncio.wait_for(clients.infer("e"), 2)
            assert response.model_version == "1"
            assert output(response).tolist() == [2.0] * 4
            await asyncio.sleep(0.05)
        assert await routed_version(door) == 1
        assert router.writer.writes == writes  # nothing new for Envoy while it waits
        hold.release.set()

        async def switched() -> bool:
            return (await clients.infer("e")).model_version == "3"

        await wait_for(switched, 10.0)
        assert await routed_version(door) == 3
        response = await clients.infer("e")
        assert output(response).tolist() == [4.0] * 4
    finally:
        hold.release.set()
        await inference.stop(0)
