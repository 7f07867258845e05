"""Open Inference Protocol load generator that checks every answer.

Closed loop: `--concurrency N` callers, each sending its next request as soon as the last
one is answered. Open loop: `--rate R` requests/s with Poisson (exponential) inter-arrival
times, latency measured from each request's scheduled time (no coordinated omission).

Requests come from a pool of pre-serialized ModelInferRequests with seeded random inputs;
the expected outputs are computed once with onnxruntime in this process, and every answer
is compared with them (`numpy.allclose`, since a batched GEMM may round differently from
an unbatched one). Requests go out as raw bytes on a generic method, so the client spends
its CPU on the calls rather than on protobuf serialization. Prints one JSON object.

    python bench/loadgen.py --target 127.0.0.1:50052 --model-file mlp.onnx --model mlp \
        --rows 1 --concurrency 64 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
import onnxruntime as ort

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.dtypes import NUMPY_TO_OIP

METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Pool:
    """Pre-serialized requests and the outputs they must produce."""

    requests: list[bytes]
    expected: list[np.ndarray]
    rows: int


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    wrong: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)


def make_pool(model_file: str, model: str, version: str, rows: int, size: int) -> Pool:
    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    out = session.get_outputs()[0]
    row_shape = [int(d) for d in inp.shape[1:]]
    rng = np.random.default_rng(7)
    requests, expected = [], []
    for i in range(size):
        x = rng.standard_normal((rows, *row_shape)).astype(np.float32)
        request = pb.ModelInferRequest(model_name=model, model_version=version, id=f"r{i}")
        request.inputs.add(name=inp.name, datatype=NUMPY_TO_OIP[x.dtype], shape=x.shape)
        request.raw_input_contents.append(x.tobytes())
        request.outputs.add(name=out.name)
        requests.append(request.SerializeToString())
        expected.append(session.run([out.name], {inp.name: x})[0])
    return Pool(requests, expected, rows)


def check(raw: bytes, want: np.ndarray) -> bool:
    response = pb.ModelInferResponse.FromString(raw)
    if len(response.raw_output_contents) != 1:
        return False
    data = response.raw_output_contents[0]
    if data == want.tobytes():
        return True
    got = np.frombuffer(data, dtype=want.dtype)
    return got.size == want.size and bool(np.allclose(got, want.ravel(), rtol=1e-4, atol=1e-5))


async def closed_loop(call, pool: Pool, concurrency: int, warmup: float, duration: float) -> Tally:
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
                raw = await call(pool.requests[k])
            except grpc.aio.AioRpcError as exc:
                if recording:
                    tally.errors += 1
                    name = exc.code().name
                    tally.error_codes[name] = tally.error_codes.get(name, 0) + 1
                continue
            elapsed = time.perf_counter() - start
            if recording:
                if check(raw, pool.expected[k]):
                    tally.ok += 1
                    tally.latencies.append(elapsed)
                else:
                    tally.wrong += 1

    tasks = [asyncio.ensure_future(caller(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    recording = True
    await asyncio.sleep(duration)
    recording = False
    stop = True
    await asyncio.gather(*tasks)
    return tally


async def open_loop(call, pool: Pool, rate: float, warmup: float, duration: float) -> Tally:
    tally = Tally()
    rng = random.Random(11)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    record_from = begin + warmup
    end = record_from + duration
    inflight: set[asyncio.Future] = set()

    async def one(k: int, scheduled: float, record: bool) -> None:
        try:
            raw = await call(pool.requests[k])
        except grpc.aio.AioRpcError as exc:
            if record:
                tally.errors += 1
                name = exc.code().name
                tally.error_codes[name] = tally.error_codes.get(name, 0) + 1
            return
        elapsed = loop.time() - scheduled
        if record:
            if check(raw, pool.expected[k]):
                tally.ok += 1
                tally.latencies.append(elapsed)
            else:
                tally.wrong += 1

    next_at = begin
    k = 0
    while next_at < end:
        now = loop.time()
        if next_at > now:
            await asyncio.sleep(next_at - now)
        task = asyncio.ensure_future(one(k % len(pool.requests), next_at, next_at >= record_from))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        k += 1
        next_at += rng.expovariate(rate)
    if inflight:
        await asyncio.gather(*inflight)
    return tally


async def run(args: argparse.Namespace) -> dict:
    pool = make_pool(args.model_file, args.model, args.version, args.rows, args.pool)
    options = [("grpc.max_receive_message_length", 64 << 20)]
    channels = [
        grpc.aio.insecure_channel(args.target, options=[*options, ("grpc.channel_id", i)])
        for i in range(args.channels)
    ]
    methods = [ch.unary_unary(METHOD) for ch in channels]  # raw bytes in and out
    counter = 0

    def call(payload: bytes):
        nonlocal counter
        counter += 1
        return methods[counter % len(methods)](payload, timeout=args.timeout)

    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.rate > 0:
        tally = await open_loop(call, pool, args.rate, args.warmup, args.duration)
    else:
        tally = await closed_loop(call, pool, args.concurrency, args.warmup, args.duration)
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    for ch in channels:
        await ch.close()
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
        "client_cpu": cpu,
    }


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
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
