"""How the columns of a table feed a model's input tensors, and the checks made per row.

Each input tensor `x` of shape `[batch, *row_shape]` (every dimension but the batch fixed)
takes `F = prod(row_shape)` values per row, from, in this order of preference:

1. the columns named for it with `--columns x=COL[,COL…]`: one column carrying the whole
   row, or exactly F columns, one value each (row-major order);
2. a column named `x`: a scalar column when F is 1, otherwise a list column — a fixed-size
   list (nested fixed-size lists for several dimensions) or a list of exactly F values per
   row, flattened row-major;
3. the columns `x[0]`, `x[1]`, … `x[F-1]` (one column per feature, the naming the monitor's
   data profiles use);
4. for a model with one input: the feature names of the version's data profile, when the
   table has all of them;
5. for a plain NPY array: the model's only input.

The checks that concern the whole file (a column missing, a list column with the wrong
fixed size, a type that can never become the tensor's) fail the job before any scoring.
The checks that concern one row (a null, a string that is not a number, an integer out of
range, a list of the wrong length) send that row to the errors file with the reason, and
the other rows are scored. Numbers are converted to the tensor's type (floats from any
number, integers from whole numbers in range, booleans from booleans or 0/1); text columns
(CSV) are parsed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelhub.common.dtypes import OIP_TO_NUMPY
from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.inference.signature import check_servable
from modelhub.inference.spec import ModelSchema

# The column a plain (unstructured) NPY array is read into.
ARRAY_COLUMN = "<array>"
# The output column that carries each row's position in the input, when no id column is
# named.
ROW_ID = "row_id"

# An element-level problem: which elements, and the reason for element i.
Problem = tuple[np.ndarray, Callable[[int], str]]

WHOLE = "whole"  # one list column carries the row
SCALAR = "scalar"  # one scalar column carries the row (F == 1)
ELEMENTS = "elements"  # F scalar columns, one value each


@dataclass(frozen=True, slots=True)
class InputColumns:
    """Where one input tensor's values come from."""

    name: str
    datatype: str
    row_shape: tuple[int, ...]
    kind: str  # WHOLE, SCALAR or ELEMENTS
    columns: tuple[str, ...]

    @property
    def size(self) -> int:
        return math.prod(self.row_shape)

    @property
    def dtype(self) -> np.dtype:
        return OIP_TO_NUMPY[self.datatype]


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """One output tensor written as a column. `row_shape` None: not known from the graph."""

    name: str
    datatype: str
    row_shape: tuple[int, ...] | None

    @property
    def arrow_type(self) -> pa.DataType:
        leaf = pa.string() if self.datatype == "BYTES" else pa.from_numpy_dtype(self.dtype)
        if self.row_shape is None or any(d < 0 for d in self.row_shape):
            return pa.list_(leaf)
        for dim in reversed(self.row_shape):
            leaf = pa.list_(leaf, dim)
        return leaf

    @property
    def dtype(self) -> np.dtype:
        return OIP_TO_NUMPY[self.datatype]

    def to_arrow(self, data: np.ndarray, rows: int) -> pa.Array:
        """A session output for `rows` rows as this column's values."""
        if data.ndim == 0 or data.shape[0] != rows:
            raise FailedPreconditionError(
                f"output {self.name!r} has shape {list(data.shape)} for {rows} input rows: "
                "the model does not score rows independently, so it cannot batch-score",
                reason="NOT_ROW_WISE",
            )
        fixed = self.row_shape is not None and -1 not in self.row_shape
        if fixed and tuple(data.shape[1:]) != self.row_shape:
            raise FailedPreconditionError(
                f"output {self.name!r} has rows of shape {list(data.shape[1:])}; its "
                f"schema says {list(self.row_shape or ())}",
                reason="OUTPUT_SHAPE_MISMATCH",
            )
        flat_data = np.ascontiguousarray(data).reshape(-1)
        if self.datatype == "BYTES":
            items = [v.decode() if isinstance(v, bytes) else v for v in flat_data.tolist()]
            flat: pa.Array = pa.array(items, pa.string())
        else:
            flat = pa.array(flat_data.astype(self.dtype, copy=False))
        if self.row_shape == ():
            return flat
        if self.row_shape is not None and -1 not in self.row_shape:
            for dim in reversed(self.row_shape):
                flat = pa.FixedSizeListArray.from_arrays(flat, dim)
            return flat
        width = math.prod(data.shape[1:])
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width, pa.int32())
        return pa.ListArray.from_arrays(offsets, flat)


@dataclass(slots=True)
class Extracted:
    """The rows of a block that can be scored (as tensors) and those that cannot."""

    feeds: dict[str, np.ndarray]
    positions: np.ndarray  # int64 positions in the input of the rows in `feeds`
    ids: pa.Array | None  # their id-column values
    error_positions: np.ndarray
    error_ids: pa.Array | None
    reasons: list[str]

    @property
    def rows(self) -> int:
        return len(self.positions)


def _is_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def _is_number(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
    )


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def list_layout(t: pa.DataType) -> tuple[pa.DataType, list[int | None]]:
    """(leaf type, size of each list level; None for a variable-size level)."""
    sizes: list[int | None] = []
    while _is_list(t):
        sizes.append(t.list_size if pa.types.is_fixed_size_list(t) else None)
        t = t.value_type
    return t, sizes


def _accepts(leaf: pa.DataType, datatype: str) -> bool:
    if pa.types.is_null(leaf):
        return True
    if datatype == "BYTES":
        return _is_text(leaf)
    return _is_text(leaf) or _is_number(leaf)


def _type_problem(column: str, leaf: pa.DataType, tensor: str, datatype: str) -> str:
    wanted = "text" if datatype == "BYTES" else "numbers (or text holding numbers)"
    return f"column {column!r} holds {leaf}; input {tensor!r} ({datatype}) takes {wanted}"


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """The mapping of one table layout onto one model: built once per job (checking the
    whole file's layout), applied to every block of rows (checking each row)."""

    inputs: tuple[InputColumns, ...]
    outputs: tuple[OutputColumn, ...]
    id_column: str | None
    max_batch: int | None  # None: any number of rows per run; 1: a fixed batch of one

    @property
    def row_id_name(self) -> str:
        return self.id_column or ROW_ID

    def read_columns(self) -> list[str]:
        """The columns a block must carry, each once, in first-use order."""
        names: list[str] = []
        for tensor in self.inputs:
            names.extend(tensor.columns)
        if self.id_column:
            names.append(self.id_column)
        return list(dict.fromkeys(names))

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (for the manifest's job identity and file metadata)."""
        return {
            "inputs": {
                t.name: {
                    "datatype": t.datatype,
                    "row_shape": list(t.row_shape),
                    "kind": t.kind,
                    "columns": list(t.columns),
                }
                for t in self.inputs
            },
            "outputs": {
                o.name: {
                    "datatype": o.datatype,
                    "row_shape": None if o.row_shape is None else list(o.row_shape),
                }
                for o in self.outputs
            },
            "id_column": self.id_column,
        }

    def output_schema(self, id_type: pa.DataType | None) -> pa.Schema:
        """Row id (position, int64) or the id column first, then one column per output."""
        fields = [pa.field(self.row_id_name, id_type or pa.int64())]
        fields += [pa.field(o.name, o.arrow_type) for o in self.outputs]
        return pa.schema(fields)

    def error_schema(self, id_type: pa.DataType | None) -> pa.Schema:
        """The errors file: the row's position, its id (when an id column is named), why."""
        fields = [pa.field("row", pa.int64())]
        if self.id_column:
            fields.append(pa.field(self.id_column, id_type or pa.string()))
        fields.append(pa.field("reason", pa.string()))
        return pa.schema(fields)

    # ------------------------------------------------------------------------ per block

    def extract(self, table: pa.Table, positions: np.ndarray) -> Extracted:
        """Tensors of the rows of `table` that pass every check; reasons for the others.
        `positions[i]` is the input position of `table`'s row i."""
        n = table.num_rows
        reasons: dict[int, str] = {}
        values: dict[str, np.ndarray] = {}
        for tensor in self.inputs:
            if tensor.kind == WHOLE:
                values[tensor.name] = self._whole(tensor, table.column(tensor.columns[0]), reasons)
            else:
                values[tensor.name] = self._elements(tensor, table, n, reasons)
        ids = table.column(self.id_column).combine_chunks() if self.id_column else None
        if not reasons:
            no_ids = ids[:0] if ids is not None else None
            return Extracted(values, positions, ids, np.zeros(0, np.int64), no_ids, [])
        bad_rows = np.fromiter(sorted(reasons), np.int64, len(reasons))
        good = np.ones(n, bool)
        good[bad_rows] = False
        good_mask = pa.array(good)
        return Extracted(
            feeds={name: array[good] for name, array in values.items()},
            positions=positions[good],
            ids=ids.filter(good_mask) if ids is not None else None,
            error_positions=positions[bad_rows],
            error_ids=ids.take(pa.array(bad_rows)) if ids is not None else None,
            reasons=[reasons[int(r)] for r in bad_rows],
        )

    def _elements(
        self, tensor: InputColumns, table: pa.Table, n: int, reasons: dict[int, str]
    ) -> np.ndarray:
        out = np.empty((n, len(tensor.columns)), dtype=tensor.dtype)
        for j, column in enumerate(tensor.columns):
            array = table.column(column).combine_chunks()
            converted, problems = convert(array, tensor.datatype, _fixed_label(column))
            out[:, j] = converted
            _record(problems, None, reasons)
        return out.reshape((n, *tensor.row_shape))

    def _whole(
        self, tensor: InputColumns, column: pa.ChunkedArray, reasons: dict[int, str]
    ) -> np.ndarray:
        name = tensor.columns[0]
        array = column.combine_chunks()
        n, size = len(array), tensor.size
        _, sizes = list_layout(array.type)
        row_problems: list[Problem] = []
        if array.null_count:
            row_problems.append((_null_mask(array), lambda _r: f"column {name!r} is null"))
        if None not in sizes:
            # Fixed-size lists, nested or not: the leaf values sit at row * size + k,
            # whatever is null (null slots keep their place).
            level: pa.Array = array
            per_row = 1
            while pa.types.is_fixed_size_list(level.type):
                width = level.type.list_size
                if per_row > 1 and level.null_count:
                    inner = np.flatnonzero(_null_mask(level)) // per_row
                    mask = np.zeros(n, bool)
                    mask[inner] = True
                    row_problems.append((mask, lambda _r: f"column {name!r} has a null inside"))
                level = level.values.slice(level.offset * width, len(level) * width)
                per_row *= width
            _record(row_problems, None, reasons)
            leaf, problems = convert(
                level, tensor.datatype, lambda e: f"column {name!r} value {e % size}"
            )
            _record(problems, lambda e: e // size, reasons)
            return leaf.reshape((n, *tensor.row_shape))
        # A list of any length per row: rows of the wrong length are refused.
        lengths = pc.fill_null(pc.list_value_length(array), size).to_numpy(zero_copy_only=False)
        wrong = lengths != size
        if wrong.any():
            row_problems.append(
                (
                    wrong,
                    lambda r: (
                        f"column {name!r} has {lengths[r]} values; input "
                        f"{tensor.name!r} takes {size}"
                    ),
                )
            )
        bad = np.zeros(n, bool)
        for mask, _ in row_problems:
            bad |= mask
        _record(row_problems, None, reasons)
        good_rows = np.flatnonzero(~bad)
        kept = array if not bad.any() else array.filter(pa.array(~bad))
        flat = pc.list_flatten(kept)
        leaf, problems = convert(
            flat, tensor.datatype, lambda e: f"column {name!r} value {e % size}"
        )
        _record(problems, lambda e: good_rows[e // size], reasons)
        shaped = leaf.reshape((len(good_rows), *tensor.row_shape))
        if not bad.any():
            return shaped
        out = np.zeros((n, *tensor.row_shape), dtype=leaf.dtype)
        if tensor.datatype == "BYTES":
            out = np.full((n, *tensor.row_shape), "", dtype=object)
        out[good_rows] = shaped
        return out


def _fixed_label(column: str) -> Callable[[int], str]:
    label = f"column {column!r}"
    return lambda _element: label


def _null_mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _record(
    problems: list[Problem], row_of: Callable[[int], int] | None, reasons: dict[int, str]
) -> None:
    """Keep the first reason of each row (elements map to rows through `row_of`)."""
    for mask, reason in problems:
        for element in np.flatnonzero(mask).tolist():
            row = element if row_of is None else int(row_of(element))
            if row not in reasons:
                reasons[row] = reason(element)


# --------------------------------------------------------------------------- conversion


def _filler(t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "0"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return b"0"
    if pa.types.is_boolean(t):
        return False
    if pa.types.is_decimal(t):
        import decimal

        return decimal.Decimal(0)
    return 0


def convert(
    values: pa.Array, datatype: str, label: Callable[[int], str]
) -> tuple[np.ndarray, list[Problem]]:
    """`values` as a numpy array of the tensor type `datatype` (one element each), with
    the elements that cannot be converted (their slots hold a placeholder)."""
    dtype = OIP_TO_NUMPY[datatype]
    n = len(values)
    if pa.types.is_null(values.type):
        filler = np.full(n, "", dtype=object) if datatype == "BYTES" else np.zeros(n, dtype)
        return filler, [(np.ones(n, bool), lambda i: f"{label(i)} is null")]
    problems: list[Problem] = []
    if values.null_count:
        problems.append((_null_mask(values), lambda i: f"{label(i)} is null"))
        values = pc.fill_null(values, _filler(values.type))
    if datatype == "BYTES":
        texts, more = _texts(values, label)
        return texts, problems + more
    if _is_text(values.type):
        source, shown, more = _parse(values, dtype, label)
        problems += more
    else:
        if pa.types.is_decimal(values.type):
            values = pc.cast(values, pa.float64())
        source = np.asarray(values.to_numpy(zero_copy_only=False))

        def shown(i: int) -> str:
            return repr(source[i].item())

    converted, more = _numbers(source, dtype, datatype, label, shown)
    return converted, problems + more


def _texts(values: pa.Array, label: Callable[[int], str]) -> tuple[np.ndarray, list[Problem]]:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object), []
    items = values.to_pylist()
    out = np.empty(len(items), dtype=object)
    bad = np.zeros(len(items), bool)
    for i, item in enumerate(items):
        try:
            out[i] = item.decode("utf-8")
        except UnicodeDecodeError:
            out[i], bad[i] = "", True
    return out, ([(bad, lambda i: f"{label(i)} is not UTF-8 text")] if bad.any() else [])


_PARSE_TARGET = {"f": pa.float64(), "i": pa.int64(), "u": pa.uint64(), "b": pa.bool_()}
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def _parse(
    values: pa.Array, dtype: np.dtype, label: Callable[[int], str]
) -> tuple[np.ndarray, Callable[[int], str], list[Problem]]:
    """Text → numbers: one Arrow cast when every value parses, one Python pass otherwise."""
    target = _PARSE_TARGET[dtype.kind]
    items: list[Any] | None = None

    def shown(i: int) -> str:
        return repr(values[i].as_py())

    try:
        text = values
        if pa.types.is_binary(text.type) or pa.types.is_large_binary(text.type):
            text = pc.cast(text, pa.string())
        parsed = pc.cast(pc.utf8_trim_whitespace(text), target)
        return np.asarray(parsed.to_numpy(zero_copy_only=False)), shown, []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        items = values.to_pylist()
    numpy_target = {"f": "f8", "i": "i8", "u": "u8", "b": "?"}[dtype.kind]
    out: np.ndarray = np.zeros(len(items), dtype=np.dtype(numpy_target))
    bad = np.zeros(len(items), bool)
    for i, item in enumerate(items):
        try:
            word = (item.decode("utf-8") if isinstance(item, bytes) else item).strip()
            if dtype.kind == "f":
                out[i] = float(word)
            elif dtype.kind == "b":
                out[i] = _BOOL_WORDS[word.lower()]
            else:
                out[i] = int(word)
        except (ValueError, OverflowError, KeyError, UnicodeDecodeError):
            bad[i] = True
    what = {
        "f": "not a number",
        "b": "not a boolean (true, false, 1 or 0)",
    }.get(dtype.kind, f"not an integer in the range of {dtype.name}")
    problems: list[Problem] = [(bad, lambda i: f"{label(i)} is {shown(i)}: {what}")]
    return out, shown, problems if bad.any() else []


def _numbers(
    source: np.ndarray,
    dtype: np.dtype,
    datatype: str,
    label: Callable[[int], str],
    shown: Callable[[int], str],
) -> tuple[np.ndarray, list[Problem]]:
    kind = dtype.kind
    if kind == "f" or source.dtype.kind == "b":
        return source.astype(dtype, copy=False), []
    if kind == "b":
        ok = (source == 0) | (source == 1)
        what = "not a boolean (0 or 1)"
    else:
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            ok = (source >= info.min) & (source <= info.max)
            if source.dtype.kind == "f":
                ok &= np.isfinite(source) & (np.floor(source) == source)
        what = f"not an integer in the range of {datatype}"
    if ok.all():
        return source.astype(dtype, copy=False), []
    converted = np.where(ok, source, 0).astype(dtype)
    return converted, [(~ok, lambda i: f"{label(i)} is {shown(i)}: {what}")]


# ------------------------------------------------------------------------------ plan


def build_plan(
    schema: ModelSchema,
    columns: Mapping[str, pa.DataType],
    *,
    model: str,
    mapping: Mapping[str, Sequence[str]] | None = None,
    feature_names: Sequence[str] = (),
    id_column: str | None = None,
    array_column: bool = False,
) -> ColumnPlan:
    """Match a table's columns (name → Arrow type) to the model's inputs, or explain
    (INVALID_ARGUMENT) why the file cannot feed this model; FAILED_PRECONDITION when the
    model itself cannot be batch-scored."""
    check_servable(schema, model)
    if not schema.inputs:
        raise FailedPreconditionError(f"model {model} has no inputs", reason="NO_INPUTS")
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - {t.name for t in schema.inputs})
    if unknown:
        raise InvalidArgumentError(
            f"--columns names {', '.join(map(repr, unknown))}, not input(s) of model {model}; "
            f"its inputs are {', '.join(repr(t.name) for t in schema.inputs)}",
            field="columns",
        )
    if id_column is not None and id_column not in columns:
        raise InvalidArgumentError(
            f"id column {id_column!r} is not in the file; its columns are {_listing(columns)}",
            field="id_column",
        )
    first_dims = [t.shape[0] if t.shape else None for t in (*schema.inputs, *schema.outputs)]
    max_batch: int | None = None
    for tensor in schema.inputs:
        if not tensor.shape or tensor.shape[0] not in (-1, 1):
            raise FailedPreconditionError(
                f"input {tensor.name!r} of model {model} has shape {_shape_text(tensor.shape)}: "
                "batch scoring needs a first (batch) dimension that is dynamic or 1",
                reason="NOT_BATCHABLE",
            )
        if any(d < 0 for d in tensor.shape[1:]):
            raise FailedPreconditionError(
                f"input {tensor.name!r} of model {model} has shape {_shape_text(tensor.shape)}: "
                "batch scoring needs every dimension but the batch fixed",
                reason="DYNAMIC_ROW_SHAPE",
            )
    if any(d == 1 for d in first_dims):
        max_batch = 1  # a model with a fixed batch of one runs row by row
    inputs = tuple(
        _input_columns(
            t.name,
            t.datatype,
            tuple(t.shape[1:]),
            columns,
            mapping.get(t.name),
            feature_names if len(schema.inputs) == 1 else (),
            array_column and len(schema.inputs) == 1,
        )
        for t in schema.inputs
    )
    outputs = []
    for out in schema.outputs:
        if out.shape and out.shape[0] not in (-1, 1):
            raise FailedPreconditionError(
                f"output {out.name!r} of model {model} has shape {_shape_text(out.shape)}: "
                "its first dimension is not the batch, so rows cannot be scored one by one",
                reason="NOT_BATCHABLE",
            )
        row_id = id_column or ROW_ID
        if out.name == row_id:
            raise InvalidArgumentError(
                f"model {model} has an output named {row_id!r}, like the row id column; "
                "name the id column with --id-column",
                field="id_column",
            )
        row_shape = tuple(out.shape[1:]) if out.shape else None  # None: rank unknown
        outputs.append(OutputColumn(out.name, out.datatype, row_shape))
    return ColumnPlan(inputs, tuple(outputs), id_column, max_batch)


def _listing(columns: Mapping[str, pa.DataType], limit: int = 12) -> str:
    names = list(columns)
    shown = ", ".join(repr(c) for c in names[:limit])
    return shown + (f" … ({len(names)} in all)" if len(names) > limit else "") or "(none)"


def _input_columns(
    name: str,
    datatype: str,
    row_shape: tuple[int, ...],
    columns: Mapping[str, pa.DataType],
    explicit: Sequence[str] | None,
    feature_names: Sequence[str],
    array_column: bool,
) -> InputColumns:
    size = math.prod(row_shape)
    described = f"input {name!r} ({datatype}, {size} value{'s' if size != 1 else ''} per row)"
    if explicit:
        missing = [c for c in explicit if c not in columns]
        if missing:
            raise InvalidArgumentError(
                f"--columns for {name!r} names {', '.join(map(repr, missing))}, not in the "
                f"file; its columns are {_listing(columns)}",
                field="columns",
            )
        if len(explicit) == 1:
            return _one_column(name, datatype, row_shape, explicit[0], columns)
        if len(explicit) != size:
            raise InvalidArgumentError(
                f"--columns gives {len(explicit)} columns for {described}: give one column "
                f"carrying the whole row, or exactly {size}",
                field="columns",
            )
        return _element_columns(name, datatype, row_shape, tuple(explicit), columns)
    if name in columns:
        return _one_column(name, datatype, row_shape, name, columns)
    indexed = tuple(f"{name}[{i}]" for i in range(size))
    present = [c for c in indexed if c in columns]
    if present:
        missing = [c for c in indexed if c not in columns]
        if missing:
            raise InvalidArgumentError(
                f"{described}: the file has {len(present)} of the columns {indexed[0]!r} … "
                f"{indexed[-1]!r}; missing {', '.join(map(repr, missing[:8]))}"
                + (" …" if len(missing) > 8 else ""),
                field="input",
            )
        return _element_columns(name, datatype, row_shape, indexed, columns)
    if len(feature_names) == size and all(f in columns for f in feature_names):
        return _element_columns(name, datatype, row_shape, tuple(feature_names), columns)
    if array_column and ARRAY_COLUMN in columns:
        return _one_column(name, datatype, row_shape, ARRAY_COLUMN, columns)
    raise InvalidArgumentError(
        f"no columns for {described}: expected a column {name!r}"
        + (f" (a list of {size} values)" if size != 1 else "")
        + (f", or the columns {indexed[0]!r} … {indexed[-1]!r}" if size > 1 else "")
        + f", or --columns {name}=COLUMN[,COLUMN…]; the file has {_listing(columns)}",
        field="input",
    )


def _one_column(
    name: str,
    datatype: str,
    row_shape: tuple[int, ...],
    column: str,
    columns: Mapping[str, pa.DataType],
) -> InputColumns:
    shown = "the NPY array" if column == ARRAY_COLUMN else f"column {column!r}"
    size = math.prod(row_shape)
    leaf, sizes = list_layout(columns[column])
    if not _accepts(leaf, datatype):
        raise InvalidArgumentError(_type_problem(column, leaf, name, datatype), field="input")
    if not sizes:
        if size != 1:
            raise InvalidArgumentError(
                f"{shown} holds one {leaf} per row; input {name!r} takes {size} values per "
                f"row (shape {_shape_text(row_shape)}): use a list column, or one column "
                f"per value ({name}[0] … {name}[{size - 1}])",
                field="input",
            )
        return InputColumns(name, datatype, row_shape, SCALAR, (column,))
    if None in sizes and len(sizes) > 1:
        raise InvalidArgumentError(
            f"{shown} is a list of lists of varying size; input {name!r} takes a fixed-size "
            f"list (nested for several dimensions) or a flat list of {size} values per row",
            field="input",
        )
    if None not in sizes:
        fixed = math.prod(s for s in sizes if s is not None)
        if fixed != size:
            raise InvalidArgumentError(
                f"{shown} holds {fixed} values per row "
                f"({' × '.join(str(s) for s in sizes)}); input {name!r} takes {size} "
                f"(shape {_shape_text(row_shape)})",
                field="input",
            )
    return InputColumns(name, datatype, row_shape, WHOLE, (column,))


def _element_columns(
    name: str,
    datatype: str,
    row_shape: tuple[int, ...],
    chosen: tuple[str, ...],
    columns: Mapping[str, pa.DataType],
) -> InputColumns:
    for column in chosen:
        t = columns[column]
        if _is_list(t):
            raise InvalidArgumentError(
                f"column {column!r} is a list ({t}); as one of the {len(chosen)} columns of "
                f"input {name!r} it must hold one value per row",
                field="input",
            )
        if not _accepts(t, datatype):
            raise InvalidArgumentError(_type_problem(column, t, name, datatype), field="input")
    if len(chosen) == 1:
        return InputColumns(name, datatype, row_shape, SCALAR, chosen)
    return InputColumns(name, datatype, row_shape, ELEMENTS, chosen)
