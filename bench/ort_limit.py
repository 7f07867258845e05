"""The compute limit: onnxruntime in-process, rows/s per batch size, with the server's
thread settings. Prints one JSON object {model: {batch: rows_per_s}}.

    python bench/ort_limit.py MODEL_DIR [--threads 1] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


def rows_per_second(path: Path, threads: int, seconds: float) -> dict[int, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    row_shape = [int(d) for d in inp.shape[1:]]
    rng = np.random.default_rng(0)
    result = {}
    for batch in BATCHES:
        x = rng.standard_normal((batch, *row_shape)).astype(np.float32)
        feeds = {inp.name: x}
        for _ in range(3):
            session.run(None, feeds)
        runs = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            session.run(None, feeds)
            runs += 1
        result[batch] = runs * batch / elapsed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--models", default="mlp,identity,cnn_small")
    args = parser.parse_args()
    out = {
        name: rows_per_second(args.model_dir / f"{name}.onnx", args.threads, args.seconds)
        for name in args.models.split(",")
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
