"""Open Inference Protocol load generator that checks every answer.

Closed loop: `--concurrency N` callers, each sending its next request as soon as the last
one is answered. Open loop: `--rate R` requests/s with Poisson (exponential) inter-arrival
times, latency measured from each request's scheduled time (no coordinated omission).

Requests come from a pool of pre-serialized ModelInferRequests with seeded random inputs;
the expected outputs are computed once with onnxruntime in this process, and every answer
is compared with them (`numpy.allclose`, since a batched GEMM may round differently from
an unbatched one). Requests go out as raw bytes on a generic method, so the client spends
its CPU on the calls rather than on protobuf serialization. Prints one JSON object.

For an endpoint with several variants, `--variant NAME=FILE` (once per variant) gives each
variant's model: every answer must then carry the response parameter `modelhub.variant`
naming one of them, and its outputs must be that variant's (answers are counted per
variant). `--key-header H --keys N` sends header `H: k<i>` with N distinct keys in turn
(a sticky key). `--alternate VERSION=FILE` (once per version) sends the pool's requests
to those versions in turn (request i to the (i mod n)-th), each checked against its own
version's outputs: the same mix of versions an endpoint with n equal variants sends to
inference, without the front door. `--cpu-pid NAME=PID` reports the CPU seconds (utime + stime) those
processes used during the measured window, as `cpu_s`.

    python bench/loadgen.py --target 127.0.0.1:50052 --model-file mlp.onnx --model mlp \
        --rows 1 --concurrency 64 --duration 10
    python bench/loadgen.py --target 127.0.0.1:8080 --model mlp-ab --model-file v1.onnx \
        --variant champion=v1.onnx --variant challenger=v2.onnx --key-header x-user-id \
        --keys 10000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.dtypes import NUMPY_TO_OIP

METHOD = "/inference.GRPCInferenceService/ModelInfer"
VARIANT_PARAMETER = "modelhub.variant"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Pool:
    """Pre-serialized requests and the outputs they must produce: `expected[k]` without
    variants; with variants, `by_variant[name][k]` for the variant that answered."""

    requests: list[bytes]
    expected: list[np.ndarray]
    rows: int
    by_variant: dict[str, list[np.ndarray]] = field(default_factory=dict)
    variants_seen: dict[str, int] = field(default_factory=dict)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    wrong: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)


def make_pool(
    model_file: str,
    model: str,
    version: str,
    rows: int,
    size: int,
    variants: dict[str, str] | None = None,
    alternate: dict[str, str] | None = None,
) -> Pool:
    """`alternate` (version → ONNX file): request i names the (i mod n)-th version and is
    checked against that version's outputs."""
    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    out = session.get_outputs()[0]
    row_shape = [int(d) for d in inp.shape[1:]]
    versions = [
        (v, ort.InferenceSession(f, providers=["CPUExecutionProvider"]))
        for v, f in (alternate or {}).items()
    ] or [(version, session)]
    rng = np.random.default_rng(7)
    requests, inputs, expected = [], [], []
    for i in range(size):
        x = rng.standard_normal((rows, *row_shape)).astype(np.float32)
        version_i, session_i = versions[i % len(versions)]
        request = pb.ModelInferRequest(model_name=model, model_version=version_i, id=f"r{i}")
        request.inputs.add(name=inp.name, datatype=NUMPY_TO_OIP[x.dtype], shape=x.shape)
        request.raw_input_contents.append(x.tobytes())
        request.outputs.add(name=out.name)
        requests.append(request.SerializeToString())
        inputs.append(x)
        expected.append(session_i.run([out.name], {inp.name: x})[0])
    by_variant: dict[str, list[np.ndarray]] = {}
    for name, path in (variants or {}).items():
        variant = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        vin, vout = variant.get_inputs()[0].name, variant.get_outputs()[0].name
        by_variant[name] = [variant.run([vout], {vin: x})[0] for x in inputs]
    return Pool(requests, expected, rows, by_variant)


def _matches(data: bytes, want: np.ndarray) -> bool:
    if data == want.tobytes():
        return True
    got = np.frombuffer(data, dtype=want.dtype)
    return got.size == want.size and bool(np.allclose(got, want.ravel(), rtol=1e-4, atol=1e-5))


def check(raw: bytes, pool: Pool, k: int) -> bool:
    """Whether the answer to request `k` is right (and, with variants, names the variant
    whose outputs it carries)."""
    response = pb.ModelInferResponse.FromString(raw)
    if len(response.raw_output_contents) != 1:
        return False
    data = response.raw_output_contents[0]
    if not pool.by_variant:
        return _matches(data, pool.expected[k])
    parameter = response.parameters.get(VARIANT_PARAMETER)
    variant = parameter.string_param if parameter is not None else ""
    expected = pool.by_variant.get(variant)
    if expected is None or not _matches(data, expected[k]):
        return False
    pool.variants_seen[variant] = pool.variants_seen.get(variant, 0) + 1
    return True


Call = Callable[[int], Awaitable[bytes]]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class CpuWindow:
    """CPU seconds (utime + stime) of some processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.begin: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def start(self) -> None:
        self.begin = {name: _cpu_ticks(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.seconds = {
            name: (_cpu_ticks(pid) - self.begin[name]) / CLOCK_TICKS
            for name, pid in self.pids.items()
        }


async def closed_loop(
    call: Call,
    pool: Pool,
    concurrency: int,
    warmup: float,
    duration: float,
    window: CpuWindow | None = None,
) -> Tally:
    tally = Tally()
    recording = False
    stop = False

    async def caller(index: int) -> None:
        i = index
        n = len(pool.requests)
        while not stop:
            k = i % n
            i += 1
            start = time.perf_counter()
            try:
                raw = await call(k)
            except grpc.aio.AioRpcError as exc:
                if recording:
                    tally.errors += 1
                    name = exc.code().name
                    tally.error_codes[name] = tally.error_codes.get(name, 0) + 1
                continue
            elapsed = time.perf_counter() - start
            if recording:
                if check(raw, pool, k):
                    tally.ok += 1
                    tally.latencies.append(elapsed)
                else:
                    tally.wrong += 1

    tasks = [asyncio.ensure_future(caller(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    recording = True
    if window is not None:
        window.start()
    await asyncio.sleep(duration)
    recording = False
    if window is not None:
        window.stop()
    stop = True
    await asyncio.gather(*tasks)
    return tally


async def open_loop(
    call: Call,
    pool: Pool,
    rate: float,
    warmup: float,
    duration: float,
    window: CpuWindow | None = None,
) -> Tally:
    tally = Tally()
    rng = random.Random(11)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    record_from = begin + warmup
    end = record_from + duration
    inflight: set[asyncio.Future[None]] = set()

    async def one(k: int, scheduled: float, record: bool) -> None:
        try:
            raw = await call(k)
        except grpc.aio.AioRpcError as exc:
            if record:
                tally.errors += 1
                name = exc.code().name
                tally.error_codes[name] = tally.error_codes.get(name, 0) + 1
            return
        elapsed = loop.time() - scheduled
        if record:
            if check(raw, pool, k):
                tally.ok += 1
                tally.latencies.append(elapsed)
            else:
                tally.wrong += 1

    next_at = begin
    k = 0
    started = False
    while next_at < end:
        if window is not None and not started and next_at >= record_from:
            window.start()
            started = True
        now = loop.time()
        if next_at > now:
            await asyncio.sleep(next_at - now)
        task = asyncio.ensure_future(one(k % len(pool.requests), next_at, next_at >= record_from))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        k += 1
        next_at += rng.expovariate(rate)
    if window is not None and started:
        window.stop()
    if inflight:
        await asyncio.gather(*inflight)
    return tally


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"{option} takes NAME=VALUE, not {item!r}")
        out[name] = value
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    variants = _pairs(args.variant, "--variant")
    alternate = _pairs(args.alternate, "--alternate")
    pool = make_pool(
        args.model_file, args.model, args.version, args.rows, args.pool, variants, alternate
    )
    window = CpuWindow({k: int(v) for k, v in _pairs(args.cpu_pid, "--cpu-pid").items()})
    options = [("grpc.max_receive_message_length", 64 << 20)]
    channels = [
        grpc.aio.insecure_channel(args.target, options=[*options, ("grpc.channel_id", i)])
        for i in range(args.channels)
    ]
    methods = [ch.unary_unary(METHOD) for ch in channels]  # raw bytes in and out
    keys = [((args.key_header, f"k{i}"),) for i in range(args.keys)] if args.key_header else []
    counter = 0

    def call(k: int) -> Awaitable[bytes]:
        nonlocal counter
        counter += 1
        method = methods[counter % len(methods)]
        metadata = keys[counter % len(keys)] if keys else None
        return method(pool.requests[k], timeout=args.timeout, metadata=metadata)  # type: ignore[no-any-return]

    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.rate > 0:
        tally = await open_loop(call, pool, args.rate, args.warmup, args.duration, window)
    else:
        tally = await closed_loop(call, pool, args.concurrency, args.warmup, args.duration, window)
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    for ch in channels:
        await ch.close()
    return summary(tally, args, cpu, window, pool.variants_seen)


def summary(
    tally: Tally,
    args: argparse.Namespace,
    client_cpu: float,
    window: CpuWindow,
    variants: dict[str, int],
) -> dict[str, Any]:
    """The JSON object a load generator prints for one measured window."""
    lat = np.array(tally.latencies) if tally.latencies else np.array([float("nan")])
    return {
        "requests": tally.ok + tally.errors + tally.wrong,
        "ok": tally.ok,
        "errors": tally.errors,
        "wrong": tally.wrong,
        "error_codes": tally.error_codes,
        "req_s": tally.ok / args.duration,
        "rows_s": tally.ok * args.rows / args.duration,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "client_cpu": client_cpu,
        "cpu_s": window.seconds,
        "variants": variants,
    }


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every load generator here shares: endpoint variants, sticky keys, CPU."""
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="an endpoint variant and its ONNX file: answers must name a variant "
        "(response parameter modelhub.variant) and carry its outputs",
    )
    parser.add_argument(
        "--alternate",
        action="append",
        default=[],
        metavar="VERSION=FILE",
        help="send the requests to these versions in turn, each checked against its file",
    )
    parser.add_argument("--key-header", default="", help="send a sticky key in this header")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct sticky keys")
    parser.add_argument(
        "--cpu-pid",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="report this process's CPU seconds over the measured window (cpu_s)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--model", required=True, help="model name sent in the request")
    parser.add_argument("--version", default="")
    parser.add_argument("--model-file", required=True, help="ONNX file for expected outputs")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests/s")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--pool", type=int, default=64, help="distinct requests")
    parser.add_argument("--timeout", type=float, default=30.0)
    add_check_arguments(parser)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
