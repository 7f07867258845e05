"""Watch: snapshot + SYNCED, resume from a revision after a disconnect, live follow,
kind filters, and OUT_OF_RANGE for compacted history and for a revision past the head."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.registry.main import RegistryApp
from modelhub.registry.store import tables
from tests.conftest import registry_settings
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub
E = pb.WatchEvent


async def _collect_until(stream, stop) -> list[pb.WatchEvent]:
    events: list[pb.WatchEvent] = []
    async for event in stream:
        events.append(event)
        if stop(event):
            break
    return events


async def test_snapshot_then_resume_after_disconnect(registry_stub: Stub) -> None:
    await upload(registry_stub, "fraud", add_constant(1.0))
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="champion", version=1)
    )

    stream = registry_stub.Watch(pb.WatchRequest(start_revision=0))
    snapshot = await asyncio.wait_for(_collect_until(stream, lambda e: e.type == E.SYNCED), 10)
    stream.cancel()
    synced = snapshot[-1]
    assert [(e.type, e.kind, e.name) for e in snapshot[:-1]] == [
        (E.PUT, pb.MODEL, "models/fraud"),
        (E.PUT, pb.MODEL_VERSION, "models/fraud/versions/1"),
        (E.PUT, pb.ALIAS, "models/fraud/aliases/champion"),
    ]
    assert snapshot[1].version.aliases == ["champion"]
    assert synced.revision >= max(e.revision for e in snapshot[:-1])

    # While disconnected: a new version, an endpoint, an alias move, an endpoint delete.
    await upload(registry_stub, "fraud", add_constant(2.0))
    await registry_stub.CreateEndpoint(
        pb.CreateEndpointRequest(
            endpoint_id="fraud",
            endpoint=pb.Endpoint(
                variants=[
                    pb.Variant(
                        name="a",
                        model="models/fraud",
                        selector=pb.VersionSelector(alias="champion"),
                        weight=1,
                    )
                ]
            ),
        )
    )
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="champion", version=2)
    )
    await registry_stub.DeleteEndpoint(pb.DeleteEndpointRequest(name="endpoints/fraud"))

    resumed = registry_stub.Watch(pb.WatchRequest(start_revision=synced.revision))
    missed = await asyncio.wait_for(
        _collect_until(resumed, lambda e: e.type == E.DELETE and e.kind == pb.ENDPOINT), 10
    )
    resumed.cancel()
    revisions = [e.revision for e in missed]
    assert revisions == list(range(synced.revision + 1, synced.revision + 1 + len(missed)))
    summary = [(e.type, e.kind, e.name) for e in missed]
    assert summary == [
        (E.PUT, pb.MODEL_VERSION, "models/fraud/versions/2"),
        (E.PUT, pb.MODEL, "models/fraud"),
        (E.PUT, pb.ENDPOINT, "endpoints/fraud"),
        (E.PUT, pb.ALIAS, "models/fraud/aliases/champion"),
        (E.PUT, pb.MODEL_VERSION, "models/fraud/versions/2"),  # gained the alias
        (E.PUT, pb.MODEL_VERSION, "models/fraud/versions/1"),  # lost it
        (E.PUT, pb.ENDPOINT, "endpoints/fraud"),  # resolves to version 2 now
        (E.DELETE, pb.ENDPOINT, "endpoints/fraud"),
    ]
    assert missed[2].endpoint.variants[0].selector.resolved_version == 1
    assert missed[6].endpoint.variants[0].selector.resolved_version == 2
    assert missed[3].alias.version == 2


async def test_live_follow_with_kind_filter(registry_stub: Stub) -> None:
    stream = registry_stub.Watch(pb.WatchRequest(start_revision=0, kinds=[pb.ALIAS]))
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.type == E.SYNCED
    await upload(registry_stub, "live", add_constant(1.0))
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/live", alias="champion", version=1)
    )
    event = await asyncio.wait_for(stream.read(), 5)
    assert (event.type, event.kind, event.name) == (E.PUT, pb.ALIAS, "models/live/aliases/champion")
    assert event.revision > first.revision
    stream.cancel()


async def test_progress_events_when_idle(database_url: str, tmp_path: Path) -> None:
    app = RegistryApp(registry_settings(database_url, tmp_path, watch_progress_s=0.2))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stream = Stub(channel).Watch(pb.WatchRequest(start_revision=0))
            synced = await asyncio.wait_for(stream.read(), 5)
            progress = await asyncio.wait_for(stream.read(), 5)
            assert progress.type == E.PROGRESS
            assert progress.revision == synced.revision
            stream.cancel()
    finally:
        await app.stop(2)


async def test_compacted_revision_is_out_of_range(database_url: str, tmp_path: Path) -> None:
    app = RegistryApp(registry_settings(database_url, tmp_path, watch_history=100))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = Stub(channel)
            for i in range(130):
                await stub.CreateModel(pb.CreateModelRequest(model_id=f"m{i}"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                stream = stub.Watch(pb.WatchRequest(start_revision=1))
                await stream.read()
            assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "revision 0" in (info.value.details() or "")
            # Recent history is still replayable; a re-list always works.
            recent = stub.Watch(pb.WatchRequest(start_revision=125))
            event = await asyncio.wait_for(recent.read(), 5)
            assert event.revision == 126
            recent.cancel()
            snapshot = stub.Watch(pb.WatchRequest(start_revision=0))
            count = 0
            async for event in snapshot:
                if event.type == E.SYNCED:
                    break
                count += 1
            assert count == 130
            snapshot.cancel()
    finally:
        await app.stop(2)


async def test_bad_watch_requests(registry_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await registry_stub.Watch(pb.WatchRequest(start_revision=-5)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await registry_stub.Watch(pb.WatchRequest(kinds=[42])).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _reason(error: grpc.aio.AioRpcError) -> str:
    info = error_info(dict(error.trailing_metadata())[STATUS_DETAILS_KEY])
    assert info is not None
    return info.reason


async def test_a_revision_ahead_of_the_head_is_out_of_range(registry_stub: Stub) -> None:
    """A follower that saw revisions the database no longer has (restored from a backup)
    must re-list: answering PROGRESS would leave it waiting for revisions it already saw."""
    await registry_stub.CreateModel(pb.CreateModelRequest(model_id="m"))
    stream = registry_stub.Watch(pb.WatchRequest(start_revision=0))
    synced = await asyncio.wait_for(_collect_until(stream, lambda e: e.type == E.SYNCED), 10)
    stream.cancel()
    head = synced[-1].revision

    # The head itself resumes fine (nothing missed).
    at_head = registry_stub.Watch(pb.WatchRequest(start_revision=head))
    await registry_stub.CreateModel(pb.CreateModelRequest(model_id="n"))
    event = await asyncio.wait_for(at_head.read(), 5)
    assert (event.type, event.name, event.revision) == (E.PUT, "models/n", head + 1)
    at_head.cancel()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(
            registry_stub.Watch(pb.WatchRequest(start_revision=head + 50)).read(), 5
        )
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert _reason(info.value) == "REVISION_AHEAD"
    details = info.value.details() or ""
    assert "revision 0" in details and str(head + 1) in details


async def test_a_database_restored_under_an_open_watch_ends_it(
    database_url: str, tmp_path: Path
) -> None:
    app = RegistryApp(registry_settings(database_url, tmp_path, watch_progress_s=0.2))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = Stub(channel)
            for i in range(5):
                await stub.CreateModel(pb.CreateModelRequest(model_id=f"m{i}"))
            stream = stub.Watch(pb.WatchRequest(start_revision=5))
            # "Restore" an older backup under the running registry: history after 2 is gone.
            async with app.db.write() as conn:
                await conn.execute(sa.delete(tables.changes).where(tables.changes.c.revision > 2))
                await conn.execute(sa.update(tables.registry_state).values(revision=2))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async with asyncio.timeout(5):
                    async for event in stream:
                        assert event.type == E.PROGRESS
            assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert _reason(info.value) == "REVISION_AHEAD"
    finally:
        await app.stop(2)
