"""The inputs a model takes, and data for them: checking calibration/validation arrays
against the schema, and synthesising rows from a data profile when none are given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelhub.common.dtypes import numpy_dtype
from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.common.onnx_schema import read_schema


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, numpy dtype, and the shape of one row (batch dim removed)."""

    name: str
    dtype: np.dtype[Any]
    row_shape: tuple[int, ...]

    @property
    def row_size(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) if self.row_shape else 1


def model_inputs(onnx_bytes: bytes) -> list[InputSpec]:
    """The model's inputs, each batched on its first dimension with fixed other dims;
    INVALID_ARGUMENT for models this tool cannot feed (no batch dim, dynamic inner dims,
    non-numeric inputs)."""
    specs = []
    for tensor in read_schema(onnx_bytes).inputs:
        dtype = numpy_dtype(tensor.datatype)
        if dtype is None or dtype.kind not in "biuf":
            raise InvalidArgumentError(
                f"input {tensor.name!r} is {tensor.datatype}: only numeric inputs can be "
                "calibrated and validated"
            )
        if not tensor.shape:
            raise InvalidArgumentError(f"input {tensor.name!r} is a scalar: no batch dimension")
        if any(d < 0 for d in tensor.shape[1:]):
            raise InvalidArgumentError(
                f"input {tensor.name!r} has shape {list(tensor.shape)}: only the first "
                "(batch) dimension may be dynamic"
            )
        specs.append(InputSpec(tensor.name, np.dtype(dtype), tuple(tensor.shape[1:])))
    return specs


def check_arrays(
    specs: list[InputSpec], arrays: Mapping[str, np.ndarray], what: str
) -> dict[str, np.ndarray]:
    """Arrays keyed by input name, each [rows, *row_shape], cast to the input's dtype; all
    with the same number of rows. INVALID_ARGUMENT naming the mismatch otherwise."""
    names = {s.name for s in specs}
    missing = sorted(names - arrays.keys())
    extra = sorted(arrays.keys() - names)
    if missing or extra:
        raise InvalidArgumentError(
            f"the {what} data does not match the model's inputs {sorted(names)}: "
            + "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"unknown {extra}" if extra else "",
                )
                if part
            )
        )
    out: dict[str, np.ndarray] = {}
    rows = -1
    for spec in specs:
        array = np.asarray(arrays[spec.name])
        if array.dtype.kind not in "biuf":
            raise InvalidArgumentError(
                f"{what} input {spec.name!r} holds {array.dtype} values, not numbers"
            )
        if array.ndim == 1 and spec.row_shape == (1,):
            array = array[:, None]
        if tuple(array.shape[1:]) != spec.row_shape or array.ndim == 0:
            raise InvalidArgumentError(
                f"{what} input {spec.name!r} has shape {list(array.shape)}; the model "
                f"takes [rows, {', '.join(map(str, spec.row_shape))}]"
            )
        if rows not in (-1, array.shape[0]):
            raise InvalidArgumentError(f"the {what} inputs disagree on the number of rows")
        rows = array.shape[0]
        if not np.all(np.isfinite(array)):
            raise InvalidArgumentError(f"{what} input {spec.name!r} holds NaN or infinite values")
        out[spec.name] = array.astype(spec.dtype, copy=False)
    if rows <= 0:
        raise InvalidArgumentError(f"the {what} data has no rows")
    return out


def _sample_feature(feature: Mapping[str, Any], rows: int, rng: np.random.Generator) -> np.ndarray:
    edges = [float(e) for e in feature.get("bin_edges", [])]
    counts = np.asarray([float(c) for c in feature.get("counts", [])], np.float64)
    if len(edges) >= 2 and counts.size == len(edges) - 1 and counts.sum() > 0:
        bins = rng.choice(counts.size, size=rows, p=counts / counts.sum())
        low, high = np.asarray(edges[:-1])[bins], np.asarray(edges[1:])[bins]
        values: np.ndarray = low + (high - low) * rng.random(rows)
        return values
    mean, std = float(feature.get("mean", 0.0)), float(feature.get("stddev", 1.0))
    return rng.normal(mean, std if std > 0 else 1.0, rows)


def synthesise(
    specs: list[InputSpec], profile: Mapping[str, Any] | None, rows: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], str]:
    """`rows` rows for every input drawn from the profile's per-feature histograms (a
    feature the profile lacks: standard normal). Features of input `x` are named `x[i]`
    (column i of the flattened row) or `x` (a one-value row); those of the first input
    also `input[i]`, as inference samples them for the monitor's drift report. Returns the
    arrays and a sentence saying how they were made. INVALID_ARGUMENT when there is no
    profile at all."""
    features = list((profile or {}).get("features", []))
    if not features:
        raise InvalidArgumentError(
            "no validation data given and the parent version has no data profile to "
            "synthesise it from: pass --validation (Parquet or NPZ)"
        )
    by_name = {str(f.get("name", "")): f for f in features}
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    used = 0
    for spec in specs:
        flat = np.empty((rows, spec.row_size), np.float64)
        for column in range(spec.row_size):
            feature = by_name.get(f"{spec.name}[{column}]")
            if feature is None and spec is specs[0]:
                feature = by_name.get(f"input[{column}]")
            if feature is None and spec.row_size == 1:
                feature = by_name.get(spec.name)
            if feature is None:
                flat[:, column] = rng.normal(0.0, 1.0, rows)
                continue
            used += 1
            flat[:, column] = _sample_feature(feature, rows, rng)
        values = flat.reshape((rows, *spec.row_shape))
        if spec.dtype.kind in "iu":
            values = np.rint(values)
        elif spec.dtype.kind == "b":
            values = (values > 0.5).astype(np.float64)
        arrays[spec.name] = values.astype(spec.dtype)
    total = sum(s.row_size for s in specs)
    how = (
        f"synthesised: {rows} rows drawn from the parent's data profile "
        f"({used} of {total} input features profiled; the rest standard normal)"
    )
    return arrays, how


def load_arrays(
    path: str | Path,
    onnx_bytes: bytes,
    what: str,
    feature_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Calibration or validation data from a file, checked against the model's inputs:
    `.npz` (one array per input, named after it), or Parquet / CSV / NPY mapped column by
    column exactly as `modelhub score` maps them (docs/scoring.md; needs the `score`
    extra: pyarrow)."""
    specs = model_inputs(onnx_bytes)
    file = Path(path)
    if file.suffix.lower() != ".npz":
        try:
            from modelhub.scoring.io import read_tensors
        except ImportError as exc:
            raise FailedPreconditionError(
                f"reading {file.name} needs pyarrow: pip install 'modelhub[score]' (or give "
                ".npz data)",
                reason="EXTRA_MISSING",
            ) from exc
        arrays = read_tensors(
            file,
            read_schema(onnx_bytes),
            model="the parent",
            what=what,
            feature_names=feature_names or [],
        )
        return check_arrays(specs, arrays, what)
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read the {what} data {file}: {exc}") from exc
    except ValueError as exc:
        raise InvalidArgumentError(f"{file} is not a readable NumPy file: {exc}") from exc
    return check_arrays(specs, arrays, what)
