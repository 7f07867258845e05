"""The directory model source (modelhub.inference.local_source): a requested model name
only ever names an entry of its directory. Found by fuzzing (tests/fuzz): a 5,000-character
name made ModelInfer answer INTERNAL (OSError: file name too long), and `../x` or an
absolute path resolved ONNX files outside the directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhub.common.errors import NotFoundError
from modelhub.inference.local_source import DirectoryModelSource
from tests.onnx_models import add_constant


async def test_names_that_are_paths_or_too_long_for_a_file_are_not_found(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    (root / "m" / "2.onnx").write_bytes(add_constant(2.0))
    (tmp_path / "outside.onnx").write_bytes(add_constant())
    source = DirectoryModelSource(root, deploy_all=False)
    assert (await source.resolve("m", "")).version == 2
    assert source.models() == ["m"]
    names = ["../outside", str(tmp_path / "outside"), "m/../m", "é" * 200, "x" * 300, "", ".."]
    for name in [*names, "a\0b"]:
        with pytest.raises(NotFoundError):
            await source.resolve(name, "")
    with pytest.raises(NotFoundError):
        await source.resolve("m", "²")
