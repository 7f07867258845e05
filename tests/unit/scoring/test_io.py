"""Input files cut into partitions that read exactly their rows, in every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.scoring.columns import ARRAY_COLUMN
from modelhub.scoring.io import CSV, NPY, PARQUET, describe_input, file_format, read_partition


def _all_rows(path: Path, fmt: str, partition_rows: int, column: str) -> tuple[list, list[int]]:
    source, parts = describe_input(path, fmt, partition_rows)
    values: list = []
    positions: list[int] = []
    for part in parts:
        block = read_partition(source, part, [column])
        values += block.table.column(column).to_pylist()
        positions += block.positions.tolist()
    return values, positions


@pytest.mark.parametrize("partition_rows", [1, 3, 4, 7, 100])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_csv_partitions_are_byte_ranges_of_whole_lines(
    tmp_path: Path, partition_rows: int, trailing_newline: bool
) -> None:
    lines = [f"{i},{i * 10}" for i in range(7)]
    path = tmp_path / "in.csv"
    path.write_text("a,b\n" + "\n".join(lines) + ("\n" if trailing_newline else ""))
    source, parts = describe_input(path, CSV, partition_rows)
    assert source.rows == 7
    assert [(p.start, p.stop) for p in parts] == [
        (s, min(s + partition_rows, 7)) for s in range(0, 7, partition_rows)
    ]
    values, positions = _all_rows(path, CSV, partition_rows, "b")
    assert values == [str(i * 10) for i in range(7)]
    assert positions == list(range(7))


def test_csv_lines_that_do_not_parse_are_error_rows_at_their_position(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2\n3\n\n4,5,6\n7,8\n9,10\n")
    source, parts = describe_input(path, CSV, 2)
    assert source.rows == 6
    found: dict[int, str] = {}
    kept: list[int] = []
    for part in parts:
        block = read_partition(source, part, ["a", "b"])
        found.update(zip(block.error_positions, block.reasons, strict=True))
        kept += block.positions.tolist()
        assert block.table.num_rows == len(block.positions)
    assert found == {
        1: "line has 1 field(s); the header names 2",
        3: "line has 3 field(s); the header names 2",
    }
    assert kept == [0, 2, 4, 5]  # the empty line is a row (of nulls)


def test_csv_with_only_a_header_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n")
    source, parts = describe_input(path, CSV, 10)
    assert (source.rows, parts) == (0, [])


def test_csv_bad_headers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("")
    with pytest.raises(InvalidArgumentError, match="no header line"):
        describe_input(path, CSV, 10)
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(InvalidArgumentError, match="names the column"):
        describe_input(path, CSV, 10)


def test_parquet_partitions_follow_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    values = np.arange(1000, dtype=np.int64)
    with pq.ParquetWriter(path, pa.schema([("v", pa.int64())])) as writer:
        start = 0
        for size in (100, 100, 100, 450, 50, 200):  # small groups merge, a big one splits
            writer.write_table(pa.table({"v": values[start : start + size]}))
            start += size
    source, parts = describe_input(path, PARQUET, 220)
    assert source.rows == 1000
    assert [(p.start, p.stop) for p in parts] == [
        (0, 200),
        (200, 300),
        (300, 450),
        (450, 600),
        (600, 750),
        (750, 800),
        (800, 1000),
    ]
    read, positions = _all_rows(path, PARQUET, 220, "v")
    assert read == values.tolist()
    assert positions == values.tolist()


def test_npy_plain_and_structured_arrays(tmp_path: Path) -> None:
    plain = np.arange(30, dtype=">f4").reshape(10, 3)  # big-endian on purpose
    np.save(tmp_path / "plain.npy", plain)
    source, parts = describe_input(tmp_path / "plain.npy", NPY, 4)
    assert source.array and dict(source.columns)[ARRAY_COLUMN] == pa.list_(pa.float32(), 3)
    assert [p.rows for p in parts] == [4, 4, 2]
    rows, _ = _all_rows(tmp_path / "plain.npy", NPY, 4, ARRAY_COLUMN)
    assert rows == plain.astype("<f4").tolist()

    structured = np.zeros(5, dtype=[("id", "<i8"), ("x", "<f8", (2, 2)), ("name", "<U4")])
    structured["id"] = np.arange(5)
    structured["x"] = np.arange(20).reshape(5, 2, 2)
    structured["name"] = ["a", "b", "c", "d", "e"]
    np.save(tmp_path / "rec.npy", structured)
    source, _ = describe_input(tmp_path / "rec.npy", NPY, 2)
    types = dict(source.columns)
    assert types["x"] == pa.list_(pa.list_(pa.float64(), 2), 2)
    assert types["name"] == pa.string()
    names, _ = _all_rows(tmp_path / "rec.npy", NPY, 2, "name")
    assert names == ["a", "b", "c", "d", "e"]


def test_unreadable_inputs_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        describe_input(tmp_path / "missing.parquet", PARQUET, 10)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidArgumentError, match=r"cannot read .* as PARQUET"):
        describe_input(tmp_path / "junk.parquet", PARQUET, 10)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArgumentError, match="object arrays"):
        describe_input(tmp_path / "obj.npy", NPY, 10)
    with pytest.raises(InvalidArgumentError, match="cannot tell the format"):
        file_format("data.txt", None, "input")
