"""Models: create, get, list with pagination and filters, update masks, etags, delete."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.onnx_models import add_constant
from tests.service.registry.helpers import upload

Stub = registry_pb2_grpc.RegistryServiceStub


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_model_crud_and_etag(registry_stub: Stub) -> None:
    created = await registry_stub.CreateModel(
        pb.CreateModelRequest(
            model_id="fraud",
            model=pb.Model(description="card fraud", tags=["payments"], labels={"team": "risk"}),
        )
    )
    assert created.name == "models/fraud"
    assert created.uid and created.etag
    assert list(created.tags) == ["payments"]
    assert created.create_time.seconds > 0

    again = await _error(registry_stub.CreateModel(pb.CreateModelRequest(model_id="fraud")))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS

    got = await registry_stub.GetModel(pb.GetModelRequest(name="models/fraud"))
    assert got == created

    updated = await registry_stub.UpdateModel(
        pb.UpdateModelRequest(
            model=pb.Model(
                name="models/fraud", description="new", labels={"x": "y"}, etag=created.etag
            ),
            update_mask=FieldMask(paths=["description"]),
        )
    )
    assert updated.description == "new"
    assert dict(updated.labels) == {"team": "risk"}  # not in the mask
    assert updated.etag != created.etag

    stale = await _error(
        registry_stub.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(name="models/fraud", description="lost", etag=created.etag),
                update_mask=FieldMask(paths=["description"]),
            )
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    assert (
        await registry_stub.GetModel(pb.GetModelRequest(name="models/fraud"))
    ).description == "new"

    bad_mask = await _error(
        registry_stub.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(name="models/fraud"), update_mask=FieldMask(paths=["uid"])
            )
        )
    )
    assert bad_mask.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask" in (bad_mask.details() or "")

    missing = await _error(registry_stub.GetModel(pb.GetModelRequest(name="models/nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (missing.details() or "")
    bad_name = await _error(registry_stub.GetModel(pb.GetModelRequest(name="fraud")))
    assert bad_name.code() == grpc.StatusCode.INVALID_ARGUMENT

    stale_delete = await _error(
        registry_stub.DeleteModel(pb.DeleteModelRequest(name="models/fraud", etag=created.etag))
    )
    assert stale_delete.code() == grpc.StatusCode.ABORTED
    await registry_stub.DeleteModel(pb.DeleteModelRequest(name="models/fraud", etag=updated.etag))
    gone = await _error(registry_stub.GetModel(pb.GetModelRequest(name="models/fraud")))
    assert gone.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pagination_and_filters(registry_stub: Stub) -> None:
    for i in range(7):
        await registry_stub.CreateModel(
            pb.CreateModelRequest(
                model_id=f"m-{i}", model=pb.Model(tags=["even"] if i % 2 == 0 else ["odd"])
            )
        )
    await registry_stub.CreateModel(pb.CreateModelRequest(model_id="other"))

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await registry_stub.ListModels(pb.ListModelsRequest(page_size=3, page_token=token))
        seen += [m.name for m in page.models]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == 8 and pages == 3

    prefixed = await registry_stub.ListModels(pb.ListModelsRequest(name_prefix="m-"))
    assert len(prefixed.models) == 7
    even = await registry_stub.ListModels(pb.ListModelsRequest(tag="even", page_size=2))
    assert [m.name for m in even.models] == ["models/m-0", "models/m-2"]
    # A token is bound to its filters.
    wrong = await _error(
        registry_stub.ListModels(pb.ListModelsRequest(tag="odd", page_token=even.next_page_token))
    )
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
    garbage = await _error(registry_stub.ListModels(pb.ListModelsRequest(page_token="%%%")))
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT
    rest = await registry_stub.ListModels(
        pb.ListModelsRequest(tag="even", page_size=2, page_token=even.next_page_token)
    )
    assert [m.name for m in rest.models] == ["models/m-4", "models/m-6"]
    assert rest.next_page_token == ""
    # LIKE wildcards in a prefix are literal.
    none = await registry_stub.ListModels(pb.ListModelsRequest(name_prefix="m_"))
    assert list(none.models) == []


async def _all_pages(stub: Stub, request: pb.ListModelsRequest) -> tuple[list[str], int]:
    """Every model name of a listing, following next_page_token; (names, pages)."""
    names: list[str] = []
    pages = 0
    while True:
        page = await stub.ListModels(request)
        names += [m.name for m in page.models]
        pages += 1
        if not page.next_page_token:
            return names, pages
        request.page_token = page.next_page_token


async def test_list_filtered_by_label_pages(registry_stub: Stub) -> None:
    owners = ["alice", "bob", "alice", "alice2", "alice", "", "alice", "alice"]
    for i, owner in enumerate(owners):
        labels = {"owner": owner} if owner else {"team": "alice"}
        if i == 0:
            labels["owner.team"] = "risk"  # a key with '.' is one key, not a JSON path
        await registry_stub.CreateModel(
            pb.CreateModelRequest(
                model_id=f"m-{i}",
                model=pb.Model(labels=labels, tags=["even"] if i % 2 == 0 else ["odd"]),
            )
        )

    alice, pages = await _all_pages(
        registry_stub, pb.ListModelsRequest(label="owner=alice", page_size=2)
    )
    assert alice == [f"models/m-{i}" for i in (0, 2, 4, 6, 7)]  # exact value, not "alice2"
    assert pages == 3
    # With a tag and a name prefix as well.
    both, _ = await _all_pages(
        registry_stub,
        pb.ListModelsRequest(label="owner=alice", tag="even", name_prefix="m-", page_size=1),
    )
    assert both == ["models/m-0", "models/m-2", "models/m-4", "models/m-6"]
    dotted = await registry_stub.ListModels(pb.ListModelsRequest(label="owner.team=risk"))
    assert [m.name for m in dotted.models] == ["models/m-0"]
    assert dict(dotted.models[0].labels)["owner"] == "alice"
    nobody = await registry_stub.ListModels(pb.ListModelsRequest(label="owner=carol"))
    assert list(nobody.models) == [] and nobody.next_page_token == ""

    # A token is bound to its label filter.
    first = await registry_stub.ListModels(pb.ListModelsRequest(label="owner=alice", page_size=2))
    assert first.next_page_token
    other = await _error(
        registry_stub.ListModels(
            pb.ListModelsRequest(label="owner=bob", page_token=first.next_page_token)
        )
    )
    assert other.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (other.details() or "")
    unfiltered = await _error(
        registry_stub.ListModels(pb.ListModelsRequest(page_token=first.next_page_token))
    )
    assert unfiltered.code() == grpc.StatusCode.INVALID_ARGUMENT

    for bad in ("owner", "=alice", "Owner=alice", "owner=" + "x" * 257):
        error = await _error(registry_stub.ListModels(pb.ListModelsRequest(label=bad)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "label" in (error.details() or ""), bad


async def test_delete_model_removes_versions_and_blobs(registry, registry_stub: Stub) -> None:
    await upload(registry_stub, "gone", add_constant(1.0))
    await upload(registry_stub, "gone", add_constant(2.0))
    kept = await upload(registry_stub, "kept", add_constant(1.0))  # shares the first blob
    await registry_stub.DeleteModel(pb.DeleteModelRequest(name="models/gone"))
    assert sorted(registry.service.blobs.digests()) == [kept.artifact.sha256]
    missing = await _error(
        registry_stub.GetModelVersion(pb.GetModelVersionRequest(name="models/gone/versions/1"))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    # A re-created model starts numbering at 1 again, with a new uid.
    again = await upload(registry_stub, "gone", add_constant(5.0))
    assert again.version == 1
