"""Files in and out: Parquet, CSV and NPY inputs read by partition, part files, and the
final output and errors files.

Inputs are cut into partitions of about `partition_rows` rows that a worker reads on its
own: Parquet by row groups (a partition never splits a row group smaller than the
partition size; a larger one is split and read by skipping), CSV by byte ranges found by
one scan for line ends (so a record must not contain a line break), NPY by slicing a
memory map. Every input position is a row: a CSV line that cannot be parsed (too many or
too few fields) is reported as an error of its row, not dropped.

Part files are Parquet, written to a temporary name and renamed, so a part file that
exists is complete. The final file is assembled from the parts in partition order.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.filestore import atomic_write, fsync_dir
from modelhub.inference.spec import ModelSchema
from modelhub.scoring.columns import ARRAY_COLUMN, build_plan, list_layout

PARQUET = "parquet"
CSV = "csv"
NPY = "npy"
FORMATS = (PARQUET, CSV, NPY)
_SUFFIXES = {".parquet": PARQUET, ".pq": PARQUET, ".csv": CSV, ".npy": NPY}
_SCAN_BLOCK = 16 << 20
_PARQUET_BATCH = 65_536


def file_format(path: str | os.PathLike[str], given: str | None, role: str) -> str:
    """The format of `path`: `given`, or its suffix."""
    if given:
        if given not in FORMATS:
            raise InvalidArgumentError(
                f"unknown {role} format {given!r}; expected one of {', '.join(FORMATS)}",
                field=f"{role}_format",
            )
        return given
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise InvalidArgumentError(
            f"cannot tell the format of {role} {str(path)!r} from its suffix; name it "
            f".parquet, .csv or .npy, or pass --{role}-format",
            field=f"{role}_format",
        )
    return fmt


@dataclass(frozen=True, slots=True)
class InputFile:
    """What a job knows about its input file (sent to every worker)."""

    path: str
    format: str
    rows: int
    columns: tuple[tuple[str, pa.DataType], ...]
    size: int
    mtime_ns: int
    array: bool = False  # a plain NPY array, read as the column ARRAY_COLUMN
    csv_names: tuple[str, ...] = ()

    def column_types(self) -> dict[str, pa.DataType]:
        return dict(self.columns)

    def identity(self) -> dict[str, object]:
        """What must not change for a job to resume (the file's path, size and time)."""
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "rows": self.rows,
        }


@dataclass(frozen=True, slots=True)
class Partition:
    """Rows [start, stop) of the input; CSV: also the bytes [byte_start, byte_stop)."""

    index: int
    start: int
    stop: int
    byte_start: int = 0
    byte_stop: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def to_json(self) -> list[int]:
        return [self.index, self.start, self.stop, self.byte_start, self.byte_stop]

    @classmethod
    def from_json(cls, value: Sequence[int]) -> Partition:
        return cls(*(int(v) for v in value))


@dataclass(slots=True)
class Block:
    """The rows of one partition: a table of the needed columns, the input position of
    each of its rows, and the rows the reader itself could not parse."""

    table: pa.Table
    positions: np.ndarray
    error_positions: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ inputs


def describe_input(
    path: str | os.PathLike[str], fmt: str, partition_rows: int
) -> tuple[InputFile, list[Partition]]:
    """Read the layout of an input file (columns, rows) and cut it into partitions."""
    file = Path(path).resolve()
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise InvalidArgumentError(
            f"input file {str(path)!r} does not exist", field="input"
        ) from None
    if not file.is_file():
        raise InvalidArgumentError(f"input {str(path)!r} is not a file", field="input")
    partition_rows = max(1, partition_rows)
    base = {"path": str(file), "format": fmt, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        if fmt == PARQUET:
            return _describe_parquet(file, base, partition_rows)
        if fmt == CSV:
            return _describe_csv(file, base, partition_rows)
        return _describe_npy(file, base, partition_rows)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        if isinstance(exc, InvalidArgumentError):
            raise
        raise InvalidArgumentError(
            f"cannot read {str(path)!r} as {fmt.upper()}: {exc}", field="input"
        ) from exc


def _describe_parquet(
    file: Path, base: dict[str, object], partition_rows: int
) -> tuple[InputFile, list[Partition]]:
    parquet = pq.ParquetFile(file)
    schema = parquet.schema_arrow
    groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    rows = sum(groups)
    ranges: list[tuple[int, int]] = []
    start = position = 0
    for size in groups:
        if size > partition_rows:  # split a large row group into equal pieces
            if position > start:
                ranges.append((start, position))
            pieces = math.ceil(size / partition_rows)
            cuts = [position + size * k // pieces for k in range(pieces + 1)]
            ranges.extend(itertools.pairwise(cuts))
            position += size
            start = position
            continue
        if position + size - start > partition_rows and position > start:
            ranges.append((start, position))
            start = position
        position += size
    if position > start:
        ranges.append((start, position))
    info = InputFile(
        rows=rows,
        columns=tuple((f.name, f.type) for f in schema),
        **base,  # type: ignore[arg-type]
    )
    return info, [Partition(i, a, b) for i, (a, b) in enumerate(ranges)]


def _describe_csv(
    file: Path, base: dict[str, object], partition_rows: int
) -> tuple[InputFile, list[Partition]]:
    with file.open("rb") as fh:
        header = fh.readline()
        if not header.strip():
            raise InvalidArgumentError(
                f"{str(file)!r} has no header line: the first line of a CSV input names "
                "its columns",
                field="input",
            )
        try:
            text = header.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                f"the header line of {str(file)!r} is not UTF-8", field="input"
            ) from None
        names = next(csv.reader([text]))
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise InvalidArgumentError(
                f"{str(file)!r} names the column(s) {', '.join(map(repr, dupes))} twice",
                field="input",
            )
        body_start = position = len(header)
        lines = 0
        starts = [body_start]
        last = b"\n"
        while block := fh.read(_SCAN_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
            first = partition_rows - 1 - lines % partition_rows
            starts.extend((position + ends[first::partition_rows] + 1).tolist())
            lines += len(ends)
            position += len(block)
            last = block[-1:]
    if last != b"\n":  # a last line without a line break is a row too
        lines += 1
    size = position
    starts = [s for s in starts if s < size] if lines else []
    partitions = [
        Partition(
            i,
            i * partition_rows,
            min((i + 1) * partition_rows, lines),
            start,
            starts[i + 1] if i + 1 < len(starts) else size,
        )
        for i, start in enumerate(starts)
    ]
    info = InputFile(
        rows=lines,
        columns=tuple((n, pa.string()) for n in names),
        csv_names=tuple(names),
        **base,  # type: ignore[arg-type]
    )
    return info, partitions


def _arrow_type(dtype: np.dtype, shape: tuple[int, ...]) -> pa.DataType:
    if dtype.kind in "US":
        leaf: pa.DataType = pa.string() if dtype.kind == "U" else pa.binary()
    elif dtype.kind in "biuf":
        leaf = pa.from_numpy_dtype(dtype.newbyteorder("="))
    else:
        raise InvalidArgumentError(
            f"NPY arrays of {dtype} cannot be scored: use numbers, booleans or fixed-width strings",
            field="input",
        )
    for dim in reversed(shape):
        leaf = pa.list_(leaf, dim)
    return leaf


def _describe_npy(
    file: Path, base: dict[str, object], partition_rows: int
) -> tuple[InputFile, list[Partition]]:
    array = _open_npy(file)
    if array.ndim == 0:
        raise InvalidArgumentError(f"{str(file)!r} holds a scalar, not rows", field="input")
    rows = array.shape[0]
    if array.dtype.names:
        columns = []
        for name in array.dtype.names:
            sub = array.dtype.fields[name][0]  # type: ignore[index]
            base_dtype, shape = sub.subdtype if sub.subdtype else (sub, ())
            columns.append((name, _arrow_type(base_dtype, tuple(array.shape[1:]) + shape)))
        plain = False
    else:
        columns = [(ARRAY_COLUMN, _arrow_type(array.dtype, tuple(array.shape[1:])))]
        plain = True
    info = InputFile(
        rows=rows,
        columns=tuple(columns),
        array=plain,
        **base,  # type: ignore[arg-type]
    )
    count = math.ceil(rows / partition_rows)
    return info, [
        Partition(i, i * partition_rows, min((i + 1) * partition_rows, rows)) for i in range(count)
    ]


def _open_npy(file: Path) -> np.ndarray:
    try:
        array: np.ndarray = np.load(file, mmap_mode="r", allow_pickle=False)
        return array
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{str(file)!r} is not an NPY array that can be scored ({exc}); object arrays "
            "are not read (they would need pickle)",
            field="input",
        ) from exc


def read_partition(source: InputFile, part: Partition, columns: Sequence[str]) -> Block:
    """The rows of `part` (only `columns`)."""
    if source.format == PARQUET:
        table = _read_parquet(source, part, columns)
        return Block(table, np.arange(part.start, part.stop, dtype=np.int64))
    if source.format == CSV:
        return _read_csv(source, part, columns)
    return _read_npy(source, part, columns)


def _read_parquet(source: InputFile, part: Partition, columns: Sequence[str]) -> pa.Table:
    parquet = pq.ParquetFile(source.path, memory_map=True)
    pieces: list[pa.Table] = []
    first = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        lo, hi = max(part.start, first), min(part.stop, first + size)
        if lo < hi:
            if lo == first and hi == first + size:
                pieces.append(
                    parquet.read_row_group(group, columns=list(columns), use_threads=False)
                )
            else:
                pieces.append(_group_slice(parquet, group, columns, lo - first, hi - first))
        first += size
        if first >= part.stop:
            break
    if not pieces:
        return parquet.schema_arrow.empty_table().select(list(columns))
    return pa.concat_tables(pieces)


def _group_slice(
    parquet: pq.ParquetFile, group: int, columns: Sequence[str], lo: int, hi: int
) -> pa.Table:
    """Rows [lo, hi) of one row group, streamed in batches (skipping those before lo)."""
    batches = []
    offset = 0
    for batch in parquet.iter_batches(
        batch_size=_PARQUET_BATCH, row_groups=[group], columns=list(columns), use_threads=False
    ):
        end = offset + batch.num_rows
        if end > lo and offset < hi:
            batches.append(batch.slice(max(lo - offset, 0), min(hi, end) - max(lo, offset)))
        offset = end
        if offset >= hi:
            break
    return pa.Table.from_batches(batches)


def _read_csv(source: InputFile, part: Partition, columns: Sequence[str]) -> Block:
    with open(source.path, "rb") as fh:
        fh.seek(part.byte_start)
        data = fh.read(part.byte_stop - part.byte_start)
    skipped: list[tuple[int, str]] = []
    expected = len(source.csv_names)

    def invalid(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # only with threaded reading, which is off here
            raise ValueError("CSV row number unknown")
        skipped.append(
            (
                part.start + row.number - 1,
                f"line has {row.actual_columns} field(s); the header names {expected}",
            )
        )
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            use_threads=False, column_names=list(source.csv_names), block_size=4 << 20
        ),
        parse_options=pacsv.ParseOptions(invalid_row_handler=invalid, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            include_columns=list(columns),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    positions = np.arange(part.start, part.stop, dtype=np.int64)
    if skipped:
        keep = np.ones(part.rows, bool)
        keep[[p - part.start for p, _ in skipped]] = False
        positions = positions[keep]
    if len(positions) != table.num_rows:
        raise InvalidArgumentError(
            f"rows {part.start}..{part.stop} of {source.path!r} did not read as "
            f"{part.rows} CSV records ({table.num_rows + len(skipped)} found): a quoted value "
            "holding a line break? Records must be one per line",
            field="input",
        )
    return Block(table, positions, [p for p, _ in skipped], [r for _, r in skipped])


def _to_arrow(values: np.ndarray) -> pa.Array:
    rows = values.shape[0]
    flat = np.ascontiguousarray(values).reshape(-1)
    if values.dtype.kind in "US":
        array: pa.Array = pa.array(flat.tolist())
    else:
        array = pa.array(flat.astype(values.dtype.newbyteorder("="), copy=False))
    for dim in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, dim)
    assert len(array) == rows
    return array


def _read_npy(source: InputFile, part: Partition, columns: Sequence[str]) -> Block:
    array = _open_npy(Path(source.path))[part.start : part.stop]
    if source.array:
        table = pa.table({ARRAY_COLUMN: _to_arrow(np.asarray(array))})
    else:
        table = pa.table({name: _to_arrow(np.asarray(array[name])) for name in columns})
    return Block(table, np.arange(part.start, part.stop, dtype=np.int64))


# ----------------------------------------------------------------------------- outputs


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write a part file atomically and durably (a temporary name, synced, renamed into
    place): the manifest that records it as done is synced too, so a resumed job never
    trusts a part that only reached the page cache."""
    tmp = _temporary(path)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _parts(paths: Sequence[Path], schema: pa.Schema) -> Iterator[pa.Table]:
    for path in paths:
        table = pq.read_table(path)
        yield table.select(schema.names).cast(schema)


def _flat_names(name: str, t: pa.DataType) -> list[str]:
    """CSV columns of one column: itself for a scalar, `name[k]` for each value of a
    fixed-size list (row-major), as input columns are named."""
    _, sizes = list_layout(t)
    if not sizes:
        return [name]
    return [f"{name}[{k}]" for k in range(math.prod(s or 0 for s in sizes))]


def check_output_format(schema: pa.Schema, fmt: str) -> None:
    """Refuse (before scoring) an output layout the format cannot hold."""
    for position, f in enumerate(schema):
        leaf, sizes = list_layout(f.type)
        if fmt in (CSV, NPY) and None in sizes:
            raise InvalidArgumentError(
                f"output {f.name!r} has rows of varying size, which {fmt.upper()} cannot hold: "
                "write Parquet",
                field="output",
            )
        if fmt == NPY and not (
            pa.types.is_integer(leaf) or pa.types.is_floating(leaf) or pa.types.is_boolean(leaf)
        ):
            what = "the id column" if position == 0 else f"output {f.name!r}"
            raise InvalidArgumentError(
                f"{what} holds {leaf}, which an NPY file cannot hold without pickle: "
                "write Parquet or CSV",
                field="output",
            )


def _flatten_table(table: pa.Table) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for f, column in zip(table.schema, table.columns, strict=True):
        names = _flat_names(f.name, f.type)
        if len(names) == 1 and not list_layout(f.type)[1]:
            columns[f.name] = column
            continue
        array = column.combine_chunks()
        while pa.types.is_fixed_size_list(array.type):
            width = array.type.list_size
            array = array.values.slice(array.offset * width, len(array) * width)
        values = array.to_numpy(zero_copy_only=False).reshape(table.num_rows, len(names))
        for k, name in enumerate(names):
            columns[name] = pa.array(values[:, k], array.type)
    return pa.table(columns)


def _numpy_dtype(schema: pa.Schema) -> np.dtype:
    fields = []
    for f in schema:
        leaf, sizes = list_layout(f.type)
        fields.append((f.name, leaf.to_pandas_dtype(), tuple(s or 0 for s in sizes)))
    return np.dtype(fields)


def write_meta(path: Path, metadata: Mapping[str, str]) -> Path:
    """The sidecar `<file>.meta.json` of a CSV or NPY file (which have no metadata)."""
    sidecar = path.with_name(path.name + ".meta.json")
    atomic_write(sidecar, json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n")
    return sidecar


def assemble(
    parts: Sequence[Path],
    schema: pa.Schema,
    output: Path,
    fmt: str,
    metadata: Mapping[str, str],
    rows: int,
) -> None:
    """Write `output` from the part files, in order (atomically: a temporary file renamed
    into place). Parquet carries `metadata` in its schema; CSV and NPY in a sidecar."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(output)
    try:
        if fmt == PARQUET:
            with pq.ParquetWriter(tmp, schema.with_metadata(dict(metadata))) as writer:
                for table in _parts(parts, schema):
                    writer.write_table(table)
        elif fmt == CSV:
            names = [n for f in schema for n in _flat_names(f.name, f.type)]
            flat_schema = _flatten_table(schema.empty_table()).schema
            # Arrow quotes every header name; the header is written here, quoted as needed.
            options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
            with tmp.open("w", newline="") as text:
                csv.writer(text, lineterminator="\n").writerow(names)
            with (
                tmp.open("ab") as sink,
                pacsv.CSVWriter(sink, flat_schema, write_options=options) as writer,
            ):
                for table in _parts(parts, schema):
                    writer.write_table(_flatten_table(table).select(names))
        else:
            dtype = _numpy_dtype(schema)
            if rows == 0:
                with tmp.open("wb") as empty:
                    np.save(empty, np.zeros(0, dtype))
            else:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows,))
                at = 0
                for table in _parts(parts, schema):
                    n = table.num_rows
                    for f, column in zip(schema, table.columns, strict=True):
                        array = column.combine_chunks()
                        while pa.types.is_fixed_size_list(array.type):
                            width = array.type.list_size
                            array = array.values.slice(array.offset * width, len(array) * width)
                        values = array.to_numpy(zero_copy_only=False)
                        out[f.name][at : at + n] = values.reshape(out[f.name][at : at + n].shape)
                    at += n
                out.flush()
                del out
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    if fmt != PARQUET:
        write_meta(output, metadata)


def read_tensors(
    path: str | os.PathLike[str],
    schema: ModelSchema,
    *,
    model: str,
    what: str,
    feature_names: Sequence[str] = (),
    max_rows: int = 100_000,
) -> dict[str, np.ndarray]:
    """The first `max_rows` rows of a Parquet/CSV/NPY file as the model's input tensors,
    mapped column by column as batch scoring maps them (modelhub.scoring.columns), for
    data that must feed the model whole (calibration, validation): a row that cannot
    (null, not a number, wrong length) is INVALID_ARGUMENT naming it, not skipped."""
    source, parts = describe_input(path, file_format(path, None, what), max_rows)
    plan = build_plan(
        schema,
        source.column_types(),
        model=model,
        feature_names=feature_names,
        array_column=source.array,
    )
    if not parts:
        raise InvalidArgumentError(f"the {what} file {str(path)!r} has no rows")
    block = read_partition(source, parts[0], plan.read_columns())
    extracted = plan.extract(block.table, block.positions)
    problems = sorted(
        [*zip(block.error_positions, block.reasons, strict=True),
         *zip(extracted.error_positions.tolist(), extracted.reasons, strict=True)]
    )  # fmt: skip
    if problems:
        row, reason = problems[0]
        raise InvalidArgumentError(
            f"{len(problems)} row(s) of the {what} file {str(path)!r} cannot feed model "
            f"{model}; the first, row {row}: {reason}",
            field=what,
        )
    return extracted.feeds
