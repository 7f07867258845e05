"""Drift over gRPC: baselines set from samples or read from the (real) registry and read
again when it changes, per-model thresholds, reports that flag the shifted feature only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import numpy as np
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.common.v1 import types_pb2
from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.profile import numeric_profile
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

from .conftest import Service, start_service
from .helpers import inference_event, ingest


def _live_events(rng: np.random.Generator, n: int, shift: float, now: float) -> list:
    return [
        inference_event(
            0.01,
            time={"seconds": int(now - 1200 + 1200 * i // n)},
            features=[
                pb.FeatureValue(name="amount", number=float(rng.normal(100, 15))),
                pb.FeatureValue(name="age", number=float(rng.normal(40 + shift, 10))),
                pb.FeatureValue(name="channel", category=str(rng.choice(["web", "app"]))),
            ],
            predictions=[pb.FeatureValue(name="label", category="ok")],
        )
        for i in range(n)
    ]


async def test_baseline_from_samples_and_report(service: Service) -> None:
    rng = np.random.default_rng(0)
    baseline = await service.stub.SetBaseline(
        pb.SetBaselineRequest(
            model="models/fraud",
            version=1,
            samples=pb.SampleData(
                features=[
                    pb.FeatureSample(name="amount", numbers=rng.normal(100, 15, 3000).tolist()),
                    pb.FeatureSample(name="age", numbers=rng.normal(40, 10, 3000).tolist()),
                    pb.FeatureSample(
                        name="channel", categories=rng.choice(["web", "app"], 3000).tolist()
                    ),
                ],
                predictions=[pb.FeatureSample(name="label", categories=["ok"] * 50)],
            ),
        )
    )
    assert baseline.origin == "monitor" and len(baseline.profile.features) == 3
    assert baseline.profile.features[0].kind == types_pb2.FeatureProfile.NUMERIC
    got = await service.stub.GetBaseline(pb.GetBaselineRequest(model="models/fraud", version=1))
    assert got.profile == baseline.profile

    await ingest(service.stub, _live_events(rng, 1500, shift=10.0, now=service.clock()))
    report = await service.stub.GetDriftReport(
        pb.GetDriftReportRequest(model="models/fraud", version=1)
    )
    assert report.window_seconds == 3600 and report.baseline_origin == "monitor"
    assert list(report.drifted) == ["age"]
    age = next(f for f in report.features if f.name == "age")
    assert age.drifted and age.psi > 0.2 and age.ks_statistic > 0.1
    assert len(age.bin_edges) == len(age.baseline_counts) + 1
    assert report.thresholds.psi == 0.2 and report.thresholds.min_samples == 100

    # Thresholds per model: a min_samples above the live count makes it insufficient.
    config = await service.stub.UpdateDriftConfig(
        pb.UpdateDriftConfigRequest(
            config=pb.DriftConfig(
                model="models/fraud", thresholds=pb.DriftThresholds(min_samples=5000)
            )
        )
    )
    assert config.thresholds.min_samples == 5000
    fetched = await service.stub.GetDriftConfig(pb.GetDriftConfigRequest(model="models/fraud"))
    assert fetched.thresholds.min_samples == 5000
    report = await service.stub.GetDriftReport(
        pb.GetDriftReportRequest(model="models/fraud", version=1)
    )
    assert report.insufficient_data and list(report.drifted) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.UpdateDriftConfig(
            pb.UpdateDriftConfigRequest(
                config=pb.DriftConfig(model="models/fraud", thresholds=pb.DriftThresholds(ks=3))
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _profile(**features: list[float]) -> types_pb2.DataProfile:
    """A registry data profile: one numeric feature per keyword, binned from its values."""
    entries = []
    for name, values in features.items():
        profile = numeric_profile(name, values)
        entries.append(
            types_pb2.FeatureProfile(
                name=name,
                kind=types_pb2.FeatureProfile.NUMERIC,
                bin_edges=profile.bin_edges,
                counts=profile.counts,
                count=profile.count,
            )
        )
    return types_pb2.DataProfile(features=entries)


async def _until(condition: Callable[[], Awaitable[bool]], limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not await condition():
            await asyncio.sleep(0.02)


async def test_baseline_read_from_the_registry_follows_its_changes(
    database_url: str, registry_address: str
) -> None:
    """The real registry: a version's data profile is the baseline; the monitor reads it
    once, and again when the registry's Watch says the version changed (the profile was
    updated), not before."""
    rng = np.random.default_rng(1)
    async with grpc.aio.insecure_channel(registry_address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        for version in (1, 2):
            created = await upload(
                registry,
                "fraud",
                add_constant(float(version)),
                create_model=version == 1,
                data_profile=_profile(age=rng.normal(40, 10, 2000).tolist()),
            )
        assert created.version == 2
        service = await start_service(
            database_url, ManualClock(), registry_address=registry_address
        )
        try:
            source = service.app.registry
            assert source is not None
            await asyncio.wait_for(source.follower.synced.wait(), 10)
            baseline = await service.stub.GetBaseline(
                pb.GetBaselineRequest(model="models/fraud", version=2)
            )
            assert baseline.origin == "registry"
            assert [f.name for f in baseline.profile.features] == ["age"]
            events = _live_events(np.random.default_rng(2), 500, shift=0.0, now=service.clock())
            for e in events:
                e.version = 2
            await ingest(service.stub, events)
            report = await service.stub.GetDriftReport(
                pb.GetDriftReportRequest(model="models/fraud", version=2)
            )
            assert report.baseline_origin == "registry" and list(report.drifted) == []
            assert source.reads == 1  # cached while the registry says nothing changed

            # The registry's profile of version 2 changes: age shifted, amount added. The
            # next report compares with it (the live ages now drift from it).
            full = await registry.GetModelVersion(
                rpb.GetModelVersionRequest(name=created.name, view=rpb.FULL)
            )
            await registry.UpdateModelVersion(
                rpb.UpdateModelVersionRequest(
                    version=rpb.ModelVersion(
                        name=created.name,
                        etag=full.etag,
                        data_profile=_profile(
                            age=rng.normal(70, 5, 2000).tolist(),
                            amount=rng.normal(100, 15, 2000).tolist(),
                        ),
                    ),
                    update_mask=FieldMask(paths=["data_profile"]),
                )
            )

            async def updated() -> bool:
                got = await service.stub.GetBaseline(
                    pb.GetBaselineRequest(model="models/fraud", version=2)
                )
                return [f.name for f in got.profile.features] == ["age", "amount"]

            await _until(updated)
            report = await service.stub.GetDriftReport(
                pb.GetDriftReportRequest(model="models/fraud", version=2)
            )
            assert "age" in report.drifted and "amount" not in report.drifted
            assert source.reads == 2
            # Version 1 was never asked for; a version the registry lacks is NOT_FOUND.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await service.stub.GetDriftReport(
                    pb.GetDriftReportRequest(model="models/fraud", version=4)
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "registry" in (err.value.details() or "")
        finally:
            await service.close()


async def test_registry_down_is_unavailable(database_url: str) -> None:
    # A port nobody listens on (bound and closed at once).
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    service = await start_service(
        database_url, ManualClock(), registry_address=address, registry_timeout_s=1.0
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await service.stub.GetBaseline(pb.GetBaselineRequest(model="models/fraud", version=3))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert address in (err.value.details() or "")
    finally:
        await service.close()
