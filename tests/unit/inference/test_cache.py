"""The artifact cache on the shared file store: a download is checked against the size and
digest the registry declared (refused as soon as it passes the size), and a crashed
download's temp file is removed when the cache starts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelhub.common.errors import UnavailableError
from modelhub.inference.cache import ArtifactCache
from modelhub.inference.spec import VersionInfo


class _Source:
    """Serves fixed bytes for every version, counting the chunks it sent."""

    def __init__(self, data: bytes, chunk: int = 4) -> None:
        self.data = data
        self.chunk = chunk
        self.sent = 0

    async def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            self.sent += 1
            yield self.data[start : start + self.chunk]


def _info(data: bytes, size: int | None = None) -> VersionInfo:
    return VersionInfo(
        "m", 1, hashlib.sha256(data).hexdigest(), len(data) if size is None else size
    )


async def test_a_download_is_stored_under_its_digest(tmp_path: Path) -> None:
    data = b"onnx bytes" * 10
    cache = ArtifactCache(tmp_path, _Source(data))  # type: ignore[arg-type]
    path = await cache.get(_info(data))
    assert path == tmp_path / "sha256" / path.name[:2] / path.name
    assert path.read_bytes() == data
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_a_download_past_the_declared_size_stops_at_once(tmp_path: Path) -> None:
    declared = b"x" * 12
    source = _Source(declared + b"and much more that nobody asked for" * 100)
    cache = ArtifactCache(tmp_path, source)  # type: ignore[arg-type]
    with pytest.raises(UnavailableError, match="more than 12 bytes") as info:
        await cache.get(_info(declared))
    assert info.value.reason == "ARTIFACT_DIGEST_MISMATCH"
    assert source.sent == 4  # 3 chunks fit, the 4th passes the size
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((tmp_path / "sha256").iterdir()) == []


async def test_a_short_or_wrong_download_is_refused(tmp_path: Path) -> None:
    data = b"y" * 20
    cache = ArtifactCache(tmp_path, _Source(data[:-1]))  # type: ignore[arg-type]
    with pytest.raises(UnavailableError, match="sha256") as info:
        await cache.get(_info(data))
    assert info.value.reason == "ARTIFACT_DIGEST_MISMATCH"
    assert not cache.path_of(_info(data).sha256).exists()
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_a_crashed_downloads_temp_file_goes_at_start(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir(parents=True)
    (tmp_path / "tmp" / "0123.part").write_bytes(b"half a model")
    ArtifactCache(tmp_path, _Source(b""))  # type: ignore[arg-type]
    assert list((tmp_path / "tmp").iterdir()) == []
