"""Inference memory of a large model: what loading it takes, what the budget counts, and
what unloading gives back.

    .venv/bin/python bench/model_memory.py [--size-mib 200] [--cycles 2] [--env NAME=VALUE]

Writes a `--size-mib` MiB model (a chain of float32 MatMuls, `tests/onnx_models.py`'s
`large_matmul`), starts `python -m modelhub.inference` on it (directory source, deployments
not followed: nothing loads until asked, CPU), then `--cycles` times: LoadModel, one
ModelInfer, RepositoryIndex (the version's accounted `memory_bytes`), UnloadModel. Prints
the server's resident memory (VmRSS) idle, after each load, and `--settle` seconds after
each unload, with the accounted figure, as a table.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procs import rss_mib, start_inference  # noqa: E402
from modelhub.api.inference.v1 import inference_pb2 as ipb  # noqa: E402
from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc  # noqa: E402
from modelhub.api.oip import grpc_predict_v2_pb2 as oip  # noqa: E402
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc  # noqa: E402
from tests.onnx_models import large_matmul  # noqa: E402

MIB = 1 << 20


def infer_once(stub: oip_grpc.GRPCInferenceServiceStub) -> None:
    metadata = stub.ModelMetadata(oip.ModelMetadataRequest(name="large", version="1"))
    side = metadata.inputs[0].shape[1]
    request = oip.ModelInferRequest(model_name="large", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, side])
    request.raw_input_contents.append(np.ones((1, side), np.float32).tobytes())
    stub.ModelInfer(request, timeout=60)


def run(args: argparse.Namespace, pid: int, address: str) -> list[tuple[str, float, bool]]:
    """(label, MiB, whether it is a resident-memory figure) rows."""
    rows: list[tuple[str, float, bool]] = []
    with grpc.insecure_channel(address) as channel:
        repository = ipb_grpc.ModelRepositoryServiceStub(channel)
        inference = oip_grpc.GRPCInferenceServiceStub(channel)
        time.sleep(args.settle)
        rows.append(("RSS idle", rss_mib(pid), True))
        for cycle in range(1, args.cycles + 1):
            started = time.perf_counter()
            repository.LoadModel(ipb.LoadModelRequest(model="large", version="1"), timeout=300)
            load_s = time.perf_counter() - started
            infer_once(inference)
            index = repository.RepositoryIndex(ipb.RepositoryIndexRequest(), timeout=10)
            accounted = next(m.memory_bytes for m in index.models if m.name == "large")
            rows.append((f"{cycle}: RSS loaded ({load_s:.1f} s) + 1 request", rss_mib(pid), True))
            rows.append((f"{cycle}: accounted (RepositoryIndex)", accounted / MIB, False))
            repository.UnloadModel(ipb.UnloadModelRequest(model="large", version="1"), timeout=60)
            time.sleep(args.settle)
            rows.append((f"{cycle}: RSS {args.settle:g} s after UnloadModel", rss_mib(pid), True))
            index = repository.RepositoryIndex(ipb.RepositoryIndexRequest(), timeout=10)
            left = sum(m.memory_bytes for m in index.models)
            rows.append((f"{cycle}: accounted after unload", left / MIB, False))
    return rows


def print_table(title: str, rows: list[tuple[str, float, bool]]) -> None:
    print(title)
    idle = rows[0][1]
    print(f"  {'(MiB)':<42}{'value':>9}{'vs idle':>9}")
    for label, value, resident in rows:
        delta = f"{value - idle:>+9.0f}" if resident and label != "RSS idle" else f"{'':>9}"
        print(f"  {label:<42}{value:>9.0f}{delta}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=float, default=200.0)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument(
        "--layers",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 800],
        help="comma-separated: one server and table per value (1: one large initializer; "
        "800: 800 middle-sized ones)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server (e.g. MODELHUB_INFERENCE_INSTANCE_COUNT=2)",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    for layers in args.layers:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "models" / "large.onnx"
            large_matmul(path, int(args.size_mib * MIB), layers)
            size = path.stat().st_size
            process, address = start_inference(
                Path(tmp),
                Path(tmp) / "models",
                {"MODELHUB_INFERENCE_WATCH_DEPLOYMENTS": "false", **env},
            )
            try:
                rows = run(args, process.pid, address)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            shape = "one initializer" if layers == 1 else f"{layers} initializers"
            print_table(f"model file {size / MIB:.1f} MiB, MatMul chain, {shape}", rows)


if __name__ == "__main__":
    main()
