"""Building a derivative: ONNX Runtime's dynamic and static int8 quantization, and the
float16 converter (for GPUs), from the parent's bytes to the derivative's bytes."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx

from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.optimize.inputs import InputSpec, check_arrays, model_inputs

log = logging.getLogger(__name__)

DYNAMIC_INT8 = "dynamic-int8"
STATIC_INT8 = "static-int8"
FP16 = "fp16"
METHODS = (DYNAMIC_INT8, STATIC_INT8, FP16)
# Rows per calibration batch fed to the static quantizer.
_CALIBRATION_BATCH = 64


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over in-memory arrays."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        rows = len(next(iter(arrays.values())))
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [
                {name: array[start : start + _CALIBRATION_BATCH] for name, array in arrays.items()}
                for start in range(0, rows, _CALIBRATION_BATCH)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order the nodes so each comes after the producers of its inputs (the float16
    converter appends its input casts at the end, which onnx.checker refuses)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(not i or i in available for i in n.input)]
        if not ready:  # a cycle or a dangling input: leave the rest as they were
            ordered += pending
            break
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    graph.ClearField("node")
    graph.node.extend(ordered)


def _refuse(method: str, exc: Exception) -> FailedPreconditionError:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return FailedPreconditionError(
        f"{method} cannot handle this model ({type(exc).__name__}: {first}); try another "
        "method, or export the model with supported operators",
        reason="OPTIMIZATION_FAILED",
        metadata={"method": method},
    )


def derive(
    parent: bytes,
    method: str,
    calibration: Mapping[str, np.ndarray] | None = None,
) -> bytes:
    """The derivative's ONNX bytes. `calibration` (arrays by input name) is required for
    static-int8. INVALID_ARGUMENT for an unknown method or calibration data that does not
    fit the model; FAILED_PRECONDITION (OPTIMIZATION_FAILED) when the tool fails on it."""
    if method not in METHODS:
        raise InvalidArgumentError(
            f"unknown optimization method {method!r}: use one of {', '.join(METHODS)}",
            field="method",
        )
    specs: list[InputSpec] = model_inputs(parent)
    if method == STATIC_INT8:
        if calibration is None:
            raise InvalidArgumentError(
                "static-int8 needs calibration data (--calibration, or the parent's data "
                "profile to synthesise it from)",
                field="calibration",
            )
        calibration = check_arrays(specs, calibration, "calibration")
    try:
        model = onnx.load_model_from_string(parent)
    except Exception as exc:
        raise InvalidArgumentError(f"the parent is not a readable ONNX model: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="modelhub-optimize-") as tmp:
        out = Path(tmp) / "derivative.onnx"
        try:
            if method == FP16:
                from onnxruntime.transformers.float16 import convert_float_to_float16

                # Inputs and outputs keep their float32 types: callers and the registry's
                # schema stay the same; the casts sit inside the graph.
                converted = convert_float_to_float16(model, keep_io_types=True)
                _sort_nodes(converted.graph)
                onnx.save_model(converted, str(out))
            else:
                from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static
                from onnxruntime.quantization.shape_inference import quant_pre_process

                source, prepared = Path(tmp) / "parent.onnx", Path(tmp) / "prepared.onnx"
                source.write_bytes(parent)
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
                if method == DYNAMIC_INT8:
                    quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)
                else:
                    assert calibration is not None
                    quantize_static(
                        str(prepared),
                        str(out),
                        _Batches(calibration),
                        activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                    )
            data = out.read_bytes()
            onnx.checker.check_model(onnx.load_model_from_string(data))
        except (InvalidArgumentError, FailedPreconditionError):
            raise
        except Exception as exc:
            log.debug("%s failed", method, exc_info=True)
            raise _refuse(method, exc) from exc
    return data
