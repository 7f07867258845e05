"""REST v2 against gRPC through the front door, in one run.

Starts the stack of bench/envoy_bench.py once (registry, monitor, inference reporting to
the monitor, router, ModelHub's Envoy with one worker, all pinned with `taskset` to
--server-cpus; `mlp` versions 1 and 2 published behind endpoint `mlp-ab`, champion v1 /
challenger v2 50/50, sticky by `x-user-id`) and measures, through the front door, at
concurrency 64 (closed loop, the load generator pinned to --client-cpus):

1. `gRPC 1-row`: bench/loadgen.py (one HTTP/2 connection);
2. `REST JSON 1-row`: bench/rest_loadgen.py, 64 HTTP/1.1 keep-alive connections, the
   tensor as a JSON list, the answer as JSON;
3. `gRPC 32-row`: bench/loadgen.py, 32 rows per request;
4. `REST binary 32-row`: bench/rest_loadgen.py, the binary tensor extension both ways.

Every case sends the same inputs (seeded) with the same sticky header and checks every
answer against onnxruntime (the variant named in the answer, its outputs). Cases are
interleaved across --repeat rotations (the order rotates) and medians reported, with the
CPU seconds per request of Envoy and inference over the measured window, then the targets:

- REST JSON 1-row ≥ 0.6 × the gRPC 1-row req/s;
- REST binary 32-row ≥ 0.9 × the gRPC 32-row rows/s.

    python bench/rest_bench.py --duration 6 --warmup 1 --repeat 3
    python bench/rest_bench.py --route model   # /v2/models/mlp/versions/1, no endpoint
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.envoy_bench import (  # noqa: E402
    ENDPOINT,
    KEY_HEADER,
    MODEL,
    VARIANTS,
    BenchPath,
    Service,
    add_run_arguments,
    median,
    rotations,
    start_shared,
    start_stack,
    stop,
    write_models,
)

CONCURRENCY = 64
JSON_TARGET = 0.6  # REST JSON 1-row req/s ÷ gRPC 1-row req/s
BINARY_TARGET = 0.9  # REST binary 32-row rows/s ÷ gRPC 32-row rows/s


@dataclass
class Case:
    """One way of sending `rows` rows per request through the front door."""

    label: str
    protocol: str  # "grpc" or "rest"
    encoding: str  # "protobuf", "json" or "binary"
    rows: int
    runs: list[dict[str, Any]] = field(default_factory=list)


CASES = [
    Case("gRPC 1-row", "grpc", "protobuf", 1),
    Case("REST JSON 1-row", "rest", "json", 1),
    Case("gRPC 32-row", "grpc", "protobuf", 32),
    Case("REST binary 32-row", "rest", "binary", 32),
]


def run_case(
    case: Case, front: BenchPath, model: str, version: str, variants: dict[str, Path],
    model_file: Path, args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """One measured run of `case` against the front door of `front`."""
    script = "loadgen.py" if case.protocol == "grpc" else "rest_loadgen.py"
    command = [
        "taskset", "-c", args.client_cpus, sys.executable, str(ROOT / "bench" / script),
        "--target", front.target, "--model", model, "--version", version,
        "--model-file", str(model_file), "--rows", str(case.rows),
        "--concurrency", str(CONCURRENCY), "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--key-header", KEY_HEADER, "--keys", str(args.keys),
    ]  # fmt: skip
    if case.protocol == "rest":
        command += ["--encoding", case.encoding]
    for name, file in variants.items():
        command += ["--variant", f"{name}={file}"]
    services = front.front + front.back
    for service in services:
        command += ["--cpu-pid", f"{service.name}={service.pid}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed on {case.label}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if not result["ok"]:
        raise SystemExit(f"no correct answer on {case.label}: {result}")
    answered = max(int(result["requests"]), 1)
    for service in services:
        result[f"{service.name}_us"] = result["cpu_s"][service.name] / answered * 1e6
    # Every server process in the path (Envoy, router, inference, monitor), per row.
    result["server_us_row"] = sum(result["cpu_s"].values()) / answered / case.rows * 1e6
    result["rows_per_cpu_s"] = 1e6 / max(result["server_us_row"], 1e-9)
    return result


def wait_rest(front: str, model: str, version: str, timeout_s: float = 60.0) -> None:
    """Until the front door answers a REST JSON inference on `model` with 200."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.0] * 256}]}
    ).encode()
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"http://{front}{path}", data=body, method="POST",
            headers={"Content-Type": "application/json", KEY_HEADER: "probe"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SystemExit(f"REST {path} not answered through {front} within {timeout_s:.0f}s ({last})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument(
        "--route",
        choices=["endpoint", "model"],
        default="endpoint",
        help=f"endpoint: `{ENDPOINT}` (two variants, sticky); model: `{MODEL}` version 1",
    )
    parser.add_argument(
        "--no-events", action="store_true", help="inference without a monitor address"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rest-bench-"))
    model_files = write_models(tmp)
    cpus = args.server_cpus
    services: list[Service] = []
    variant_files = {n: model_files[v] for n, v in VARIANTS.items()}
    if args.route == "endpoint":
        model, version, variants = ENDPOINT, "", variant_files
    else:
        model, version, variants = MODEL, "1", {}

    def keep(service: Service) -> Service:
        services.append(service)
        return service

    began = time.monotonic()
    try:
        shared = start_shared(tmp, cpus, model_files, keep)
        _, paths = start_stack(shared, not args.no_events, keep)
        front = next(p for p in paths if p.label in ("front door", "front door, events off"))
        wait_rest(front.target, model, version)
        pinning = {s.name: s.cpus_allowed() for s in services}
        time.sleep(1.0)
        for order in rotations(CASES, args.repeat):  # type: ignore[arg-type]
            for case in order:
                result = run_case(case, front, model, version, variants, model_files[1], args)
                case.runs.append(result)
                print(
                    f"  {case.label:<20} {result['req_s']:>7.0f} req/s {result['rows_s']:>8.0f} "
                    f"rows/s p50 {result['p50_ms']:.2f} ms client CPU "
                    f"{result['client_cpu']:.2f} errors {result['errors'] + result['wrong']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for service in reversed(services):
            stop(service)
    report(front, model, version, pinning, args, time.monotonic() - began, tmp)


def _ratio(a: Case, b: Case, key: str) -> tuple[float, list[float]]:
    """median(a) ÷ median(b), and the ratio within each rotation (same run: same noise)."""
    paired = [float(x[key]) / float(y[key]) for x, y in zip(a.runs, b.runs, strict=True)]
    return median(a.runs, key) / median(b.runs, key), paired


def report(
    front: BenchPath,
    model: str,
    version: str,
    pinning: dict[str, str],
    args: argparse.Namespace,
    elapsed_s: float,
    tmp: Path,
) -> None:
    envoy_name, inference_name = front.front[0].name, front.back[0].name
    route = f"endpoint `{model}`" if not version else f"model `{model}` version {version}"
    print(
        f"\nREST v2 vs gRPC through the front door — {route}, closed loop c={CONCURRENCY}. "
        f"Server side ({', '.join(pinning)}; Envoy with 1 worker) pinned to CPUs "
        f"{args.server_cpus}, load generator to CPUs {args.client_cpus}; {args.duration:g} s "
        f"measured after {args.warmup:g} s warmup per run; median of {args.repeat} "
        f"interleaved runs; events {'off' if args.no_events else 'on'}.\n"
    )
    print(
        "| case | req/s | rows/s | p50 ms | p99 ms | errors | Envoy µs/req | inference µs/req "
        "| server µs/row | client CPU | request bytes |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for case in CASES:
        errors = sum(int(r["errors"]) + int(r["wrong"]) for r in case.runs)
        size = case.runs[0].get("request_bytes", "—")
        print(
            f"| {case.label} | {median(case.runs, 'req_s'):.0f} "
            f"| {median(case.runs, 'rows_s'):.0f} | {median(case.runs, 'p50_ms'):.2f} "
            f"| {median(case.runs, 'p99_ms'):.2f} | {errors} "
            f"| {median(case.runs, f'{envoy_name}_us'):.0f} "
            f"| {median(case.runs, f'{inference_name}_us'):.0f} "
            f"| {median(case.runs, 'server_us_row'):.0f} "
            f"| {median(case.runs, 'client_cpu'):.2f} | {size} |"
        )
    grpc1, json1, grpc32, binary32 = CASES
    print("\nTargets (ratio of medians; in brackets the ratio within each rotation):")
    for label, a, b, key, unit, goal in (
        ("REST JSON 1-row", json1, grpc1, "req_s", "req/s", JSON_TARGET),
        ("REST binary 32-row", binary32, grpc32, "rows_s", "rows/s", BINARY_TARGET),
    ):
        ratio, paired = _ratio(a, b, key)
        print(
            f"- {label} ≥ {goal}× {b.label} {unit}: {median(a.runs, key):.0f} vs "
            f"{median(b.runs, key):.0f} = {ratio:.2f}× "
            f"[{', '.join(f'{p:.2f}' for p in paired)}] — {'met' if ratio >= goal else 'missed'}"
        )
        cost, cost_paired = _ratio(a, b, "rows_per_cpu_s")
        print(
            f"  (rows per server CPU second, less sensitive to other load on the server CPUs: "
            f"{cost:.2f}× [{', '.join(f'{p:.2f}' for p in cost_paired)}])"
        )
    print(
        "\nCPU µs/req: utime + stime of the process over the measured window ÷ requests "
        "answered in it. Client CPU: the load generator's CPU seconds per second (near 1.0: "
        "the client limits). server µs/row: CPU of Envoy + router + inference + monitor per "
        "request ÷ rows per request. request bytes: mean HTTP request (head + body) for "
        "REST. errors: failed calls + wrong answers (every answer is checked)."
    )
    others = [s for s in front.front + front.back if s.name not in (envoy_name, inference_name)]
    for case in CASES:
        split = {}
        for run in case.runs:
            for name, count in run["variants"].items():
                split[name] = split.get(name, 0) + int(count)
        total = sum(split.values()) or 1
        shares = " / ".join(f"{n} {k / total:.0%}" for n, k in sorted(split.items()))
        rest = ", ".join(f"{s.name} {median(case.runs, f'{s.name}_us'):.0f}" for s in others)
        codes: dict[str, int] = {}
        for run in case.runs:
            for code, count in run["error_codes"].items():
                codes[code] = codes.get(code, 0) + int(count)
        print(
            f"  {case.label:<20} other µs/req: {rest or '—'}; variants {shares or '—'}; "
            f"runs req/s {[round(r['req_s']) for r in case.runs]}"
            + (f"; errors {codes}" if codes else "")
        )
    print(f"Pinning (Cpus_allowed_list): {pinning}")
    print(f"Took {elapsed_s:.0f} s (logs in {tmp})")


if __name__ == "__main__":
    main()
