"""REST v2 (KServe v2 / Triton HTTP) load generator over HTTP/1.1 keep-alive that checks
every answer: the REST counterpart of bench/loadgen.py.

Closed loop: `--concurrency N` persistent connections (one caller each), each sending its
next request as soon as the last answer has arrived. A minimal HTTP/1.1 client on asyncio
streams (answers with `content-length` or chunked; a `connection: close` answer reopens
the connection), so that one core drives many connections.

Requests come from a pool of pre-serialized bodies with seeded random inputs (the same
inputs bench/loadgen.py sends), in one of two encodings:

- `--encoding json`: `{"inputs": [{"name", "shape", "datatype", "data"}]}`, the data a
  flat list of numbers as tritonclient writes it (float32 values printed as Python
  floats); the answer's outputs come back as JSON;
- `--encoding binary`: the binary tensor extension — the JSON header (input with
  `parameters.binary_data_size`, output `y` with `parameters.binary_data`), then the raw
  little-endian tensor; header `Inference-Header-Content-Length`; the answer's output
  comes back after its JSON header, whose length is in `inference-header-content-length`.

The expected outputs are computed once with onnxruntime in this process, and every answer
must have status 200 and carry them (`numpy.allclose`, as bench/loadgen.py). For an
endpoint, `--variant NAME=FILE` (once per variant): the answer must name its variant in
`parameters["modelhub.variant"]` and carry that variant's outputs. `--key-header H
--keys N` sends header `H: k<i>` with N distinct keys in turn. `--cpu-pid NAME=PID`
reports those processes' CPU seconds over the measured window (`cpu_s`). Prints one JSON
object with the same fields as bench/loadgen.py.

    python bench/rest_loadgen.py --target 127.0.0.1:8080 --model mlp --version 1 \
        --model-file mlp.onnx --encoding json --rows 1 --concurrency 64 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import CpuWindow, Tally, _matches, _pairs, add_check_arguments, summary

VARIANT_PARAMETER = "modelhub.variant"
HEADER_LENGTH = b"inference-header-content-length"


@dataclass
class RestPool:
    """Pre-serialized request heads (without the key header) and bodies, and the outputs
    they must produce: `expected[k]` without variants, else `by_variant[name][k]`."""

    heads: list[bytes]
    bodies: list[bytes]
    expected: list[np.ndarray]
    output: str
    binary: bool
    by_variant: dict[str, list[np.ndarray]] = field(default_factory=dict)
    variants_seen: dict[str, int] = field(default_factory=dict)


def make_pool(
    model_file: str,
    host: str,
    model: str,
    version: str,
    rows: int,
    size: int,
    binary: bool,
    variants: dict[str, str] | None = None,
) -> RestPool:
    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    out = session.get_outputs()[0]
    row_shape = [int(d) for d in inp.shape[1:]]
    rng = np.random.default_rng(7)  # the same inputs as bench/loadgen.py
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    heads, bodies, inputs, expected = [], [], [], []
    for _ in range(size):
        x = rng.standard_normal((rows, *row_shape)).astype(np.float32)
        tensor: dict[str, Any] = {"name": inp.name, "shape": list(x.shape), "datatype": "FP32"}
        extra = ""
        if binary:
            tensor["parameters"] = {"binary_data_size": x.nbytes}
            document = {
                "inputs": [tensor],
                "outputs": [{"name": out.name, "parameters": {"binary_data": True}}],
            }
            header = json.dumps(document).encode()
            body = header + x.tobytes()
            content_type = "application/octet-stream"
            extra = f"Inference-Header-Content-Length: {len(header)}\r\n"
        else:
            tensor["data"] = x.ravel().tolist()
            body = json.dumps({"inputs": [tensor]}).encode()
            content_type = "application/json"
        heads.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}"
            ).encode()
        )
        bodies.append(body)
        inputs.append(x)
        expected.append(session.run([out.name], {inp.name: x})[0])
    by_variant: dict[str, list[np.ndarray]] = {}
    for name, file in (variants or {}).items():
        variant = ort.InferenceSession(file, providers=["CPUExecutionProvider"])
        vin, vout = variant.get_inputs()[0].name, variant.get_outputs()[0].name
        by_variant[name] = [variant.run([vout], {vin: x})[0] for x in inputs]
    return RestPool(heads, bodies, expected, out.name, binary, by_variant)


def check(headers: dict[bytes, bytes], body: bytes, pool: RestPool, k: int) -> bool:
    """Whether a 200 answer to request `k` carries the right output (and, with variants,
    names the variant whose outputs it carries)."""
    try:
        return _check(headers, body, pool, k)
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
        return False


def _check(headers: dict[bytes, bytes], body: bytes, pool: RestPool, k: int) -> bool:
    if pool.binary:
        length = int(headers.get(HEADER_LENGTH, b"-1"))
        if length < 0:
            return False
        document = orjson.loads(body[:length])
        (output,) = document["outputs"]
        data = body[length:]
        if output["parameters"]["binary_data_size"] != len(data):
            return False
    else:
        document = orjson.loads(body)
        (output,) = document["outputs"]
        data = np.asarray(output["data"], dtype=np.float32).tobytes()
    if output["name"] != pool.output:
        return False
    if not pool.by_variant:
        return _matches(data, pool.expected[k])
    variant = document.get("parameters", {}).get(VARIANT_PARAMETER, "")
    expected = pool.by_variant.get(variant)
    if expected is None or not _matches(data, expected[k]):
        return False
    pool.variants_seen[variant] = pool.variants_seen.get(variant, 0) + 1
    return True


class HttpError(Exception):
    """A failed exchange: the connection broke, or the answer was not HTTP/1.1."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Sends `request` (complete bytes), returns status, headers (lowercase names)
        and body."""
        if self.writer is None:
            await self.open()
        reader, writer = self.reader, self.writer
        assert reader is not None
        assert writer is not None
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = headers.get(b"content-length")
            if length is not None:
                body = await reader.readexactly(int(length))
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await _chunked(reader)
            else:
                raise HttpError("answer without content-length or chunked encoding")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise HttpError(type(exc).__name__) from exc
        except (ValueError, IndexError) as exc:
            self.close()
            raise HttpError("malformed answer") from exc
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers, body


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def closed_loop(
    target: str,
    pool: RestPool,
    keys: list[bytes],
    concurrency: int,
    warmup: float,
    duration: float,
    window: CpuWindow,
) -> Tally:
    host, _, port = target.rpartition(":")
    connections = [Connection(host, int(port)) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    tally = Tally()
    recording = False
    stop = False
    counter = 0
    n = len(pool.bodies)

    def fail(code: str) -> None:
        if recording:
            tally.errors += 1
            tally.error_codes[code] = tally.error_codes.get(code, 0) + 1

    async def caller(index: int, connection: Connection) -> None:
        nonlocal counter
        i = index
        while not stop:
            k = i % n
            i += 1
            counter += 1
            key = keys[counter % len(keys)] if keys else b""
            request = b"".join((pool.heads[k], key, b"\r\n", pool.bodies[k]))
            start = time.perf_counter()
            try:
                status, headers, body = await connection.exchange(request)
            except HttpError as exc:
                fail(str(exc))
                continue
            elapsed = time.perf_counter() - start
            if not recording:
                continue
            if status != 200:
                fail(f"HTTP {status}")
            elif check(headers, body, pool, k):
                tally.ok += 1
                tally.latencies.append(elapsed)
            else:
                tally.wrong += 1

    tasks = [asyncio.ensure_future(caller(i, c)) for i, c in enumerate(connections)]
    await asyncio.sleep(warmup)
    recording = True
    window.start()
    await asyncio.sleep(duration)
    recording = False
    window.stop()
    stop = True
    await asyncio.gather(*tasks)
    for connection in connections:
        connection.close()
    return tally


async def run(args: argparse.Namespace) -> dict[str, object]:
    variants = _pairs(args.variant, "--variant")
    binary = args.encoding == "binary"
    pool = make_pool(
        args.model_file, args.target, args.model, args.version, args.rows, args.pool, binary,
        variants,
    )  # fmt: skip
    window = CpuWindow({k: int(v) for k, v in _pairs(args.cpu_pid, "--cpu-pid").items()})
    keys = [f"{args.key_header}: k{i}\r\n".encode() for i in range(args.keys)] if args.key_header else []  # fmt: skip
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tally = await closed_loop(
        args.target, pool, keys, args.concurrency, args.warmup, args.duration, window
    )
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return summary(tally, args, cpu, window, pool.variants_seen) | {
        "request_bytes": int(
            np.mean([len(h) + len(b) for h, b in zip(pool.heads, pool.bodies, strict=True)])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the HTTP listener")
    parser.add_argument("--model", required=True, help="model (or endpoint) in the path")
    parser.add_argument("--version", default="", help="adds /versions/V to the path")
    parser.add_argument("--model-file", required=True, help="ONNX file for expected outputs")
    parser.add_argument("--encoding", choices=["json", "binary"], default="json")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--concurrency", type=int, default=64, help="connections")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pool", type=int, default=64, help="distinct requests")
    add_check_arguments(parser)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
