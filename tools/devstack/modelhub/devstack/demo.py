"""The demo model `make up` registers: a small fraud classifier in two versions.

Deterministic (seeded) so every machine builds the same bytes: 8 numeric features →
Gemm → Softmax over 2 classes (legit, fraud). Version 2 weighs the features differently, so
the two variants of the demo endpoint give visibly different answers.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 8
CLASSES = 2
# Column i of the input tensor: the name the router gives sampled feature values.
FEATURE_NAMES = [f"input[{i}]" for i in range(FEATURES)]


def classifier(version: int) -> bytes:
    """ONNX bytes of demo classifier `version` (1 or 2)."""
    rng = np.random.default_rng(1000 + version)
    weights = rng.normal(0, 1, (FEATURES, CLASSES)).astype(np.float32)
    bias = rng.normal(0, 0.1, (CLASSES,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "W", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        f"fraud_v{version}",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="modelhub-demo",
        producer_version=str(version),
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def training_sample(rows: int = 5000, seed: int = 7) -> np.ndarray:
    """Synthetic "training data": standard normal features."""
    return np.random.default_rng(seed).normal(0, 1, (rows, FEATURES)).astype(np.float32)


def data_profile(sample: np.ndarray, bins: int = 10) -> dict[str, object]:
    """A DataProfile (JSON form) of `sample`: per-feature histograms and quantiles."""
    quantile_points = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]
    features = []
    for index, name in enumerate(FEATURE_NAMES):
        column = sample[:, index].astype(np.float64)
        counts, edges = np.histogram(column, bins=bins)
        features.append(
            {
                "name": name,
                "kind": "NUMERIC",
                "bin_edges": edges.tolist(),
                "counts": counts.astype(float).tolist(),
                "quantiles": np.quantile(column, quantile_points).tolist(),
                "count": int(column.size),
                "mean": float(column.mean()),
                "stddev": float(column.std()),
                "min": float(column.min()),
                "max": float(column.max()),
            }
        )
    return {"features": features}
