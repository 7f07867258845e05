"""Optimized derivatives of the bench models: for each method, what `modelhub versions
optimize` would report — artifact size ratio, in-process latency and throughput ratios at
batch 1 and at the parent's best batch size, and the output error — in one table.

    python bench/optimize_bench.py                       # CPU, 1 intra-op thread
    python bench/optimize_bench.py --providers CUDAExecutionProvider,CPUExecutionProvider \\
        --methods fp16                                   # on a GPU (bench/gpu.sh)

Validation rows are standard normal (seeded), the same for every method; static-int8
calibrates on another 256 seeded rows. Ratios are derivative / parent measured in the same
process, one after the other (modelhub.optimize.evaluate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from models import cnn_small, mlp  # noqa: E402

from modelhub.common.errors import ModelHubError  # noqa: E402
from modelhub.optimize import METHODS, derive, evaluate  # noqa: E402

MODELS = {"mlp": mlp, "cnn_small": cnn_small}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--providers", default="CPUExecutionProvider")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per timing")
    args = parser.parse_args()
    providers = args.providers.split(",")
    print(f"providers {providers}, {args.threads} intra-op thread(s), {args.rows} rows\n")
    print(
        "| model | method | size | latency b1 | rows/s b1 | best batch | latency best "
        "| rows/s best | max abs err | mean abs err | argmax agree | build s |"
    )
    print("|---" * 12 + "|")
    for name in args.models.split(","):
        info = MODELS[name]()
        rng = np.random.default_rng(0)
        validation = {
            info.input_name: rng.standard_normal((args.rows, *info.row_shape)).astype(np.float32)
        }
        calibration = {
            info.input_name: rng.standard_normal((256, *info.row_shape)).astype(np.float32)
        }
        for method in args.methods.split(","):
            start = time.perf_counter()
            try:
                derivative = derive(info.onnx_bytes, method, calibration)
                built = time.perf_counter() - start
                r = evaluate(
                    info.onnx_bytes,
                    derivative,
                    method,
                    validation,
                    "seeded standard normal",
                    threads=args.threads,
                    providers=providers,
                    budget_s=args.budget,
                )
            except ModelHubError as exc:
                print(f"| {name} | {method} | {exc.message} |" + " |" * 9)
                continue
            agree = "-" if r.argmax_agreement is None else f"{r.argmax_agreement:.1%}"
            print(
                f"| {name} | {method} | {r.size_ratio:.2f}× | {r.latency_ratio_batch1:.2f}× "
                f"| {r.throughput_ratio_batch1:.2f}× | {r.best_batch_size} "
                f"| {r.latency_ratio_best:.2f}× | {r.throughput_ratio_best:.2f}× "
                f"| {r.max_abs_diff:.3g} | {r.mean_abs_diff:.3g} | {agree} | {built:.1f} |"
            )
    print("\nratios: derivative / parent (latency < 1 and rows/s > 1 are better)")


if __name__ == "__main__":
    main()
