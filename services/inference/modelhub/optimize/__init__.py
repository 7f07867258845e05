"""Optimized derivatives of a registered version: quantization (ONNX Runtime's tools) and
float16 conversion, each with an evaluation report measured where the command runs.

`derive` builds the derivative's bytes, `evaluate` compares it with its parent on a
validation set (given, or synthesised from the parent's data profile). The CLI
(`modelhub versions optimize`) registers the result as a new version whose lineage names
the parent and the method, with the report stored beside it in the registry.
"""

from modelhub.optimize.derive import METHODS, derive
from modelhub.optimize.evaluate import EvaluationReport, evaluate
from modelhub.optimize.inputs import InputSpec, model_inputs, synthesise

__all__ = [
    "METHODS",
    "EvaluationReport",
    "InputSpec",
    "derive",
    "evaluate",
    "model_inputs",
    "synthesise",
]
