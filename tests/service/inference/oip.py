"""Building Open Inference Protocol requests and reading answers, for the tests."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.dtypes import NUMPY_TO_OIP, OIP_TO_NUMPY


def infer_request(
    model: str,
    inputs: dict[str, np.ndarray],
    *,
    version: str = "",
    request_id: str = "",
    outputs: Iterable[str] = (),
    datatypes: dict[str, str] | None = None,
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, array in inputs.items():
        datatype = (datatypes or {}).get(name) or NUMPY_TO_OIP[array.dtype]
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The output arrays, whether answered raw or (for typed requests) as typed contents."""
    from modelhub.inference.convert import TYPED_FIELD

    if not response.raw_output_contents:
        return {
            tensor.name: np.asarray(
                getattr(tensor.contents, TYPED_FIELD[tensor.datatype]),
                dtype=OIP_TO_NUMPY[tensor.datatype],
            ).reshape(tuple(tensor.shape))
            for tensor in response.outputs
        }
    return {
        tensor.name: np.frombuffer(raw, dtype=OIP_TO_NUMPY[tensor.datatype]).reshape(
            tuple(tensor.shape)
        )
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
