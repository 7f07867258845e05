"""Upload sessions over plain HTTP through the front door (Envoy's JSON transcoder, the
way a browser uploads): start with JSON, append raw `application/octet-stream` chunks,
commit; wrong offsets, oversized chunks, a digest mismatch, cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.registry.uploads import MAX_CHUNK_BYTES
from tests.onnx_models import add_constant
from tests.service.registry.helpers import download
from tests.service.router.helpers import EnvoyProcess, start_envoy, start_router

pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("envoy")]

MODEL = add_constant(3.0, features=40_000)  # ~160 KB
OCTETS = {"content-type": "application/octet-stream"}


def _call(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"text": raw.decode(errors="replace")}


class Front:
    def __init__(self, address: str) -> None:
        self.address = address

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        url = f"http://{self.address}{path}"
        return await asyncio.to_thread(_call, url, method, body, headers)

    async def start(self, data: bytes, model: str, **metadata: Any) -> str:
        fields = {
            "parent": f"models/{model}",
            "create_model": True,
            "sha256": hashlib.sha256(data).hexdigest(),
            **metadata,
        }
        status, session = await self.call("POST", "/v1/uploads", {"metadata": fields})
        assert status == 200, session
        assert session["received_bytes"] == "0"
        assert session["max_chunk_bytes"] == str(MAX_CHUNK_BYTES)
        return str(session["name"])

    async def append(self, name: str, offset: int, chunk: bytes) -> tuple[int, Any]:
        return await self.call("POST", f"/v1/{name}:append?offset={offset}", chunk, OCTETS)


@pytest.fixture
async def front(registry_address: str, tmp_path: Path) -> AsyncIterator[Front]:
    """Envoy in front of the registry (the router writes its routes; no inference)."""
    xds = tmp_path / "xds"
    backends = ["127.0.0.1:9"]
    router = await start_router(registry_address, backends, xds)
    proxy: EnvoyProcess | None = None
    try:
        proxy = await start_envoy(
            tmp_path, xds, inference=backends, router=router.address, registry=registry_address
        )
        yield Front(proxy.address)
    finally:
        if proxy is not None:
            await proxy.stop()
        await router.stop(0)


async def test_browser_style_upload_in_chunks(front: Front, registry_address: str) -> None:
    name = await front.start(MODEL, "web", size_bytes=str(len(MODEL)), description="browser")
    offsets = list(range(0, len(MODEL), 40_000))
    assert len(offsets) == 5
    for offset in offsets:
        status, session = await front.append(name, offset, MODEL[offset : offset + 40_000])
        assert status == 200, session
        assert int(session["received_bytes"]) == min(offset + 40_000, len(MODEL))
    # The last chunk again (a retry after a lost answer): acknowledged, not appended.
    status, session = await front.append(name, offsets[-1], MODEL[offsets[-1] :])
    assert (status, session["received_bytes"]) == (200, str(len(MODEL)))

    # Wrong offsets: FAILED_PRECONDITION (HTTP 400) with where the session stands.
    status, error = await front.append(name, 40_000, MODEL[40_000:80_000])
    assert status == 400, error
    assert error["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert f"next chunk starts at {len(MODEL)}" in error["message"]
    (info,) = [d for d in error["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == "WRONG_OFFSET"
    assert info["metadata"]["received_bytes"] == str(len(MODEL))
    # A chunk over 8 MiB: RESOURCE_EXHAUSTED (HTTP 429).
    status, error = await front.append(name, len(MODEL), b"\0" * (MAX_CHUNK_BYTES + 1))
    assert status == 429, error
    assert "at most 8388608 bytes" in error["message"]

    status, session = await front.call("GET", f"/v1/{name}")
    assert (status, session["received_bytes"]) == (200, str(len(MODEL)))
    assert session["metadata"]["description"] == "browser"

    status, version = await front.call("POST", f"/v1/{name}:commit", {})
    assert status == 200, version
    assert version["name"] == "models/web/versions/1"
    assert version["artifact"]["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert version["description"] == "browser"
    async with grpc.aio.insecure_channel(registry_address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        _, body = await download(stub, version["name"])
        assert body == MODEL
        listed = await stub.ListModelVersions(pb.ListModelVersionsRequest(parent="models/web"))
        assert [v.version for v in listed.versions] == [1]


async def test_digest_mismatch_and_cancel_over_http(front: Front) -> None:
    name = await front.start(b"other bytes", "mismatch")
    status, _ = await front.append(name, 0, MODEL)
    assert status == 200
    status, error = await front.call("POST", f"/v1/{name}:commit", {})
    assert status == 400, error
    assert "sha256" in error["message"]
    (info,) = [d for d in error["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == "DIGEST_MISMATCH"
    status, missing = await front.call("GET", "/v1/models/mismatch")
    assert status == 404, missing

    status, answer = await front.call("DELETE", f"/v1/{name}")
    assert (status, answer) == (200, {})
    status, gone = await front.call("GET", f"/v1/{name}")
    assert status == 404, gone
    status, error = await front.append(name, len(MODEL), b"late")
    assert status == 404, error
    status, error = await front.call("GET", "/v1/uploads/not-a-session")
    assert status == 400, error


async def test_a_field_bound_by_the_path_cannot_be_set_again_in_the_body(
    front: Front, registry_address: str
) -> None:
    """PATCH /v1/models/a with {"name": "models/b"} must not update b (Envoy's transcoder
    would let the body win: reject_binding_body_field_collisions)."""
    async with grpc.aio.insecure_channel(registry_address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for model in ("alpha", "beta"):
            await stub.CreateModel(pb.CreateModelRequest(model_id=model))
        status, error = await front.call(
            "PATCH",
            "/v1/models/alpha?update_mask=description",
            {"name": "models/beta", "description": "changed"},
        )
        assert status == 400, error
        status, error = await front.call(
            "POST",
            "/v1/models/alpha/aliases",
            {"parent": "models/beta", "alias": "x", "version": 1},
        )
        assert status == 400, error
        beta = await stub.GetModel(pb.GetModelRequest(name="models/beta"))
        assert beta.description == ""
        aliases = await stub.ListAliases(pb.ListAliasesRequest(parent="models/beta"))
        assert list(aliases.aliases) == []
        # Without the collision the same calls work.
        status, model = await front.call(
            "PATCH", "/v1/models/alpha?update_mask=description", {"description": "changed"}
        )
        assert (status, model["description"]) == (200, "changed")
