"""Inference memory under a stream of oversized requests that it refuses.

    .venv/bin/python bench/rejected_memory.py [--size-mb 40] [--concurrency 8] [--duration 20]

Starts `python -m modelhub.inference` (directory source, the `identity` model, default
settings otherwise: `max_request_bytes` 32 MiB), then keeps `--concurrency` ModelInfer calls
of `--size-mb` MB each in flight for `--duration` seconds; every one is refused with
RESOURCE_EXHAUSTED. Prints the server's resident memory idle, during the load (median and
peak of samples every 0.2 s) and `--settle` seconds after it, and the answers' codes.
Targets: peak ≤ idle + 200 MiB, after ≤ idle + 50 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build  # noqa: E402
from modelhub.api.oip import grpc_predict_v2_pb2 as oip  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_inference(tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    models = tmp / "models"
    models.mkdir()
    (models / "identity.onnx").write_bytes(build("identity").onnx_bytes)
    ready = tmp / "inference.ready"
    full_env = {
        **os.environ,
        "MODELHUB_INFERENCE_PORT": "0",
        "MODELHUB_INFERENCE_METRICS_PORT": "-1",
        "MODELHUB_INFERENCE_READY_FILE": str(ready),
        "MODELHUB_INFERENCE_MODEL_SOURCE": "directory",
        "MODELHUB_INFERENCE_MODEL_DIR": str(models),
        "MODELHUB_INFERENCE_CACHE_DIR": str(tmp / "cache"),
        "MODELHUB_INFERENCE_DEVICE": "cpu",
        "MODELHUB_LOG_LEVEL": "WARNING",
        **env,
    }
    log = (tmp / "inference.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelhub.inference"],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    for _ in range(1200):
        if ready.exists():
            info = json.loads(ready.read_text())
            return process, f"127.0.0.1:{info['port']}"
        if process.poll() is not None:
            raise SystemExit(f"inference exited:\n{(tmp / 'inference.log').read_text()[-3000:]}")
        time.sleep(0.05)
    raise SystemExit("inference did not start")


def oversized_request(size_bytes: int) -> bytes:
    rows = max(1, size_bytes // (16 * 4))
    request = oip.ModelInferRequest(model_name="identity")
    request.inputs.add(name="x", datatype="FP32", shape=[rows, 16])
    request.raw_input_contents.append(bytes(rows * 16 * 4))
    return request.SerializeToString()


async def load(
    address: str, payload: bytes, concurrency: int, duration_s: float
) -> collections.Counter[str]:
    codes: collections.Counter[str] = collections.Counter()
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out
        deadline = time.monotonic() + duration_s

        async def loop() -> None:
            while time.monotonic() < deadline:
                try:
                    await call(payload, timeout=30)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    details = (exc.details() or "")[:60]
                    codes[f"{exc.code().name}: {details}"] += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return codes


async def sample(pid: int, stop: asyncio.Event, into: list[float]) -> None:
    while not stop.is_set():
        into.append(rss_mib(pid))
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, pid: int, address: str) -> None:
    await asyncio.sleep(1.0)
    idle = rss_mib(pid)
    payload = oversized_request(int(args.size_mb * 1e6))
    samples: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(pid, stop, samples))
    codes = await load(address, payload, args.concurrency, args.duration)
    stop.set()
    await sampler
    await asyncio.sleep(args.settle)
    after = rss_mib(pid)
    during_median = statistics.median(samples) if samples else 0.0
    during_peak = max(samples, default=0.0)
    print(
        f"{args.concurrency} concurrent {args.size_mb:g} MB ModelInfer calls for "
        f"{args.duration:g} s ({len(payload)} bytes each)"
    )
    print(f"{'RSS (MiB)':<28}{'value':>10}{'vs idle':>10}{'target':>10}")
    print(f"{'idle':<28}{idle:>10.0f}{'':>10}{'':>10}")
    print(f"{'during (median)':<28}{during_median:>10.0f}{during_median - idle:>+10.0f}{'':>10}")
    print(f"{'during (peak)':<28}{during_peak:>10.0f}{during_peak - idle:>+10.0f}{'+200':>10}")
    print(f"{f'{args.settle:g} s after':<28}{after:>10.0f}{after - idle:>+10.0f}{'+50':>10}")
    print("answers:")
    for code, count in codes.most_common():
        print(f"  {count:>6}  {code}")
    ok = during_peak <= idle + 200 and after <= idle + 50
    print("targets met" if ok else "TARGETS MISSED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server (e.g. MODELHUB_INFERENCE_MAX_REQUEST_BYTES=…)",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        process, address = start_inference(Path(tmp), env)
        try:
            asyncio.run(run(args, process.pid, address))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


if __name__ == "__main__":
    main()
