"""ModelHub inference benchmark: one table comparing the inference service with a minimal
unbatched grpc.aio server and with onnxruntime in-process.

    python bench/run.py [--duration 5] [--repeat 3] [--server-cores 0] [--client-cores 1]

What runs, all pinned with `taskset` (server on --server-cores, load generator on
--client-cores):
1. The compute limit: `ort_limit.py`, onnxruntime in-process with the server's thread
   settings, rows/s per batch size 1…128.
2. For each scenario, each server in turn (interleaved `--repeat` times, medians
   reported — this machine's neighbours make single runs noisy):
   - `minimal`: `minimal_server.py`, decode → onnxruntime → answer, no batching;
   - `min+rt`: the same servicer inside ModelHub's ServiceRuntime (tracing and edge
     interceptors), to separate the platform's per-request cost from the service's;
   - `modelhub`: `python -m modelhub.inference` serving the models from a directory;
   - `mh-nobatch`: the same with max_batch_size 1 (for the open-loop comparison).
   The load generator (`loadgen.py`) checks every answer against onnxruntime.
3. One table, then the targets of issue 3 with the measured ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from models import write_all  # noqa: E402


@dataclass
class Scenario:
    label: str
    model: str
    rows: int = 1
    concurrency: int = 0
    rate: float = 0.0  # open loop when > 0
    servers: tuple[str, ...] = ("minimal", "modelhub")


@dataclass
class Result:
    runs: list[dict] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    def total(self, key: str) -> int:
        return sum(r[key] for r in self.runs)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process and its descendants, in clock ticks."""
    total = 0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _cpu_ticks(int(child))
    except (OSError, ValueError):
        pass
    return total


class Server:
    """One server process, pinned, started and waited for."""

    def __init__(self, kind: str, model_dir: Path, model: str, args: argparse.Namespace) -> None:
        self.kind = kind
        self.ready = Path(tempfile.mkdtemp(prefix="bench-")) / "ready.json"
        pin = ["taskset", "-c", args.server_cores]
        env = dict(os.environ)
        if kind in ("minimal", "min+rt"):
            command = [
                *pin,
                sys.executable,
                str(BENCH / "minimal_server.py"),
                str(model_dir / f"{model}.onnx"),
                "--ready-file",
                str(self.ready),
                "--threads",
                str(args.threads),
            ]
            if kind == "min+rt":
                command.append("--runtime")
        else:
            command = [*pin, sys.executable, "-m", "modelhub.inference"]
            env.update(
                MODELHUB_INFERENCE_MODEL_SOURCE="directory",
                MODELHUB_INFERENCE_MODEL_DIR=str(model_dir),
                MODELHUB_INFERENCE_CACHE_DIR=str(args.work / "cache"),
                MODELHUB_INFERENCE_PORT="0",
                MODELHUB_INFERENCE_METRICS_PORT="-1",
                MODELHUB_INFERENCE_READY_FILE=str(self.ready),
                MODELHUB_INFERENCE_INTRA_OP_THREADS=str(args.threads),
                MODELHUB_INFERENCE_DEVICE=args.device,
                MODELHUB_INFERENCE_WORKERS=str(args.workers),
                MODELHUB_LOG_LEVEL="WARNING",
            )
            if kind == "mh-nobatch":
                env["MODELHUB_INFERENCE_MAX_BATCH_SIZE"] = "1"
        self.process = subprocess.Popen(command, env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not self.ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.05)
        self.port = json.loads(self.ready.read_text())["port"]
        time.sleep(0.5)  # let the models finish warming up

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_load(server: Server, scenario: Scenario, model_dir: Path, args: argparse.Namespace) -> dict:
    command = [
        "taskset",
        "-c",
        args.client_cores,
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--target",
        f"127.0.0.1:{server.port}",
        "--model",
        scenario.model,
        "--model-file",
        str(model_dir / f"{scenario.model}.onnx"),
        "--rows",
        str(scenario.rows),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--channels",
        str(args.channels),
    ]
    if scenario.rate > 0:
        command += ["--rate", str(scenario.rate)]
    else:
        command += ["--concurrency", str(scenario.concurrency)]
    cpu: dict[str, float] = {}

    def sample() -> None:  # server CPU over the measured window only
        time.sleep(args.warmup + 0.1)
        start, t0 = _cpu_ticks(server.process.pid), time.monotonic()
        time.sleep(max(0.1, args.duration - 0.3))
        ticks = _cpu_ticks(server.process.pid) - start
        cpu["server"] = ticks / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    sampler.join()
    result = json.loads(out.stdout)
    result["server_cpu"] = cpu.get("server", float("nan"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--workers", type=int, default=1, help="modelhub server processes")
    parser.add_argument("--channels", type=int, default=1, help="client connections")
    parser.add_argument("--device", default="cpu", help="modelhub device: cpu, gpu, auto")
    parser.add_argument("--only", default="", help="comma-separated scenario labels")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()

    model_dir = args.work / "models"
    write_all(model_dir)
    limit_out = subprocess.run(
        [
            "taskset",
            "-c",
            args.server_cores,
            sys.executable,
            str(BENCH / "ort_limit.py"),
            str(model_dir),
            "--threads",
            str(args.threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    limits = {m: {int(b): v for b, v in t.items()} for m, t in json.loads(limit_out.stdout).items()}
    best = {m: max(t.values()) for m, t in limits.items()}

    print(
        f"\nonnxruntime in-process, {args.threads} intra-op thread, rows/s by batch size "
        f"(cores {args.server_cores})"
    )
    sizes = sorted(next(iter(limits.values())))
    print(f"{'model':<10}" + "".join(f"{b:>10}" for b in sizes))
    for model, table in limits.items():
        print(f"{model:<10}" + "".join(f"{table[b]:>10.0f}" for b in sizes))

    scenarios = [
        Scenario("mlp c1", "mlp", concurrency=1, servers=("minimal", "min+rt", "modelhub")),
        Scenario("mlp c8", "mlp", concurrency=8),
        Scenario("mlp c64", "mlp", concurrency=64, servers=("minimal", "min+rt", "modelhub")),
        Scenario("mlp x32 c64", "mlp", rows=32, concurrency=64),
        Scenario("identity c1", "identity", concurrency=1),
        Scenario("identity c8", "identity", concurrency=8),
        Scenario(
            "identity c64", "identity", concurrency=64, servers=("minimal", "min+rt", "modelhub")
        ),
        Scenario("cnn_small c64", "cnn_small", concurrency=64),
    ]
    if args.only:
        wanted = set(args.only.split(","))
        scenarios = [s for s in scenarios if s.label in wanted]
    results: dict[tuple[str, str], Result] = {}

    def measure(scenario: Scenario) -> None:
        for _ in range(args.repeat):
            for kind in scenario.servers:
                server = Server(kind, model_dir, scenario.model, args)
                try:
                    result = run_load(server, scenario, model_dir, args)
                finally:
                    server.stop()
                results.setdefault((scenario.label, kind), Result()).runs.append(result)
                print(
                    f"  {scenario.label:<16} {kind:<11} {result['req_s']:>8.0f} req/s "
                    f"p50 {result['p50_ms']:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )

    for scenario in scenarios:
        measure(scenario)
    # Open loop at 10% of the service's closed-loop capacity on mlp.
    capacity = results.get(("mlp c64", "modelhub"))
    if capacity is not None and (not args.only or "mlp open10%" in args.only):
        rate = round(0.1 * capacity.median("req_s"))
        open_loop = Scenario(
            f"mlp open {rate}/s", "mlp", rate=rate, servers=("minimal", "mh-nobatch", "modelhub")
        )
        scenarios.append(open_loop)
        measure(open_loop)

    print(
        f"\nclosed/open loop, server cores {args.server_cores}, client cores "
        f"{args.client_cores}, {args.duration:.0f}s runs, median of {args.repeat}"
    )
    header = (
        f"{'scenario':<18}{'server':<12}{'req/s':>8}{'rows/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'errors':>7}{'srv cpu':>8}{'cli cpu':>8}{'÷ORT best':>10}"
    )
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        for kind in scenario.servers:
            r = results[(scenario.label, kind)]
            errors = r.total("errors") + r.total("wrong")
            print(
                f"{scenario.label:<18}{kind:<12}{r.median('req_s'):>8.0f}"
                f"{r.median('rows_s'):>9.0f}{r.median('p50_ms'):>8.2f}{r.median('p99_ms'):>8.2f}"
                f"{errors:>7}{r.median('server_cpu'):>8.2f}{r.median('client_cpu'):>8.2f}"
                f"{r.median('rows_s') / best[scenario.model]:>10.3f}"
            )

    def ratio(a: tuple[str, str], b: tuple[str, str], key: str) -> float | None:
        if a in results and b in results:
            return results[a].median(key) / results[b].median(key)
        return None

    targets = [
        (
            "mlp c64 req/s ÷ minimal",
            ratio(("mlp c64", "modelhub"), ("mlp c64", "minimal"), "req_s"),
            ">=",
            1.8,
        ),
        (
            "identity c64 req/s ÷ minimal",
            ratio(("identity c64", "modelhub"), ("identity c64", "minimal"), "req_s"),
            ">=",
            1.0,
        ),
        (
            "mlp x32 c64 rows/s ÷ ORT best",
            results[("mlp x32 c64", "modelhub")].median("rows_s") / best["mlp"]
            if ("mlp x32 c64", "modelhub") in results
            else None,
            ">=",
            0.8,
        ),
        (
            "mlp c1 p50 ÷ minimal p50",
            ratio(("mlp c1", "modelhub"), ("mlp c1", "minimal"), "p50_ms"),
            "<=",
            1.1,
        ),
    ]
    open_label = scenarios[-1].label if scenarios and scenarios[-1].rate else None
    if open_label:
        for key in ("p50_ms", "p99_ms"):
            targets.append(
                (
                    f"open loop {key[:3]} batching on ÷ off",
                    ratio((open_label, "modelhub"), (open_label, "mh-nobatch"), key),
                    "<=",
                    1.1,
                )
            )
    print("\ntargets (issue 3)")
    for name, value, op, goal in targets:
        if value is None:
            continue
        met = value >= goal if op == ">=" else value <= goal
        print(f"  {name:<34} {value:6.2f}  (target {op} {goal})  {'met' if met else 'MISSED'}")
    print(
        f"\nmodelhub --workers {args.workers}, device {args.device}, {args.threads} intra-op "
        f"thread(s); load generator: Python grpc.aio, {args.channels} connection(s), "
        "raw-bytes generic stub, every answer checked"
    )


if __name__ == "__main__":
    main()
