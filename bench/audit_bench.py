"""What the payload audit log costs the request path: the same front-door load with the
endpoint's audit log off, at a sample rate of 1 (every request recorded with its
payloads), and at rate 1 with the monitor stopped (every record dropped), side by side.

The stack is envoy_bench's (registry, monitor, inference reporting events, router and
ModelHub's Envoy, pinned to the server CPUs; bench/loadgen.py pinned to the client CPUs,
checking every answer) on endpoint `mlp-ab` (model `mlp`: 256 float32 inputs, 16 outputs
per row, so a record holds about 3 KB of payload). Cases `off` and `rate 1` are interleaved
over --repeat runs (medians reported); `rate 1, monitor down` runs last, after the monitor
is stopped. Per case: req/s, p50/p99, inference CPU per request, inference RSS after the
run, and the audit records inference sent and dropped (by reason) during it.

Target: at rate 1, req/s ≥ 0.9 × off at the highest concurrency, and the same with the
monitor down (recording never waits for the monitor; what it cannot send is dropped). The
monitor stores every record (a database write each) on the same server CPUs here: its CPU
per request is shown apart.

`--micro` measures instead, in this process, the CPU time inference spends per audited
request, by payload size: building the record on the request path (`RequestAuditor.record`)
and encoding it for the monitor in the sender task (`audit_records_request`), against the
256 KiB cap.

    python bench/audit_bench.py --duration 6 --warmup 1 --repeat 3
    python bench/audit_bench.py --micro
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.envoy_bench import (  # noqa: E402
    ENDPOINT,
    MODEL,
    BenchPath,
    Service,
    add_run_arguments,
    median,
    run_load,
    scrape,
    start_shared,
    start_stack,
    stop,
    write_models,
)
from bench.procs import rss_mib  # noqa: E402
from modelhub.api.registry.v1 import registry_pb2 as rpb  # noqa: E402
from modelhub.api.registry.v1 import registry_pb2_grpc  # noqa: E402

RECORDS = "modelhub_inference_audit_records_total"
DROPPED = "modelhub_inference_audit_records_dropped_total"


async def set_audit(registry: str, rate: float) -> None:
    async with grpc.aio.insecure_channel(registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await stub.UpdateEndpoint(
            rpb.UpdateEndpointRequest(
                endpoint=rpb.Endpoint(
                    name=f"endpoints/{ENDPOINT}", audit=rpb.AuditPolicy(sample_rate=rate)
                ),
                update_mask=FieldMask(paths=["audit"]),
            )
        )


def counters(inference: Service) -> dict[str, float]:
    out = {f"records{k}": v for k, v in scrape(inference.metrics_port, RECORDS).items()}
    out.update({f"dropped{k}": v for k, v in scrape(inference.metrics_port, DROPPED).items()})
    return out


def micro() -> None:
    """CPU per audited request in inference, by payload size (process time, so that other
    load on the machine does not count)."""
    import numpy as np

    from modelhub.common.audit import record_bytes
    from modelhub.common.events import EventPipeline, SendResult
    from modelhub.common.monitor_sink import audit_records_request
    from modelhub.inference.audit import AuditPolicies, AuditPolicy, RequestAuditor
    from modelhub.inference.request import InputTensor, OutputTensor
    from modelhub.inference.routing import Route

    class Sink:
        async def send_events(self, events: Any) -> SendResult:
            return SendResult(len(events))

        async def send_outcomes(self, outcomes: Any) -> int:
            return 0

    policy = AuditPolicy(1.0)
    route = Route(endpoint="endpoints/e", variant="a", request_id="r")
    print("| input values (float32) | outputs | record bytes | request path µs | encoding µs |")
    print("|--:|--:|--:|--:|--:|")
    for values, outputs in ((256, 16), (4096, 16), (65_536, 1000), (1 << 20, 1000)):
        pipeline: EventPipeline[Any] = EventPipeline(
            Sink(),
            max_buffered=1 << 30,
            max_buffered_bytes=1 << 40,
            batch_size=50,
            flush_interval_s=60,
            max_outcomes=1,
            size=record_bytes,
        )
        policies = AuditPolicies()
        policies.put("endpoints/e", policy)
        auditor = RequestAuditor(pipeline, policies, max_record_bytes=256 << 10)
        x = np.random.default_rng(0).random((1, values), dtype=np.float32)
        y = np.random.default_rng(1).random((1, outputs), dtype=np.float32)
        count = max(20, min(5000, 20_000_000 // values))
        start = time.process_time()
        for _ in range(count):
            auditor.record(
                policy,
                route,
                request_id="r",
                arrival=time.time(),
                latency_s=0.001,
                model="m",
                version=1,
                status_code=0,
                status_message="",
                caller="anonymous",
                caller_role="admin",
                trace_id="",
                inputs=[InputTensor("x", "FP32", x.shape, x)],
                outputs=[OutputTensor("y", "FP32", y)],
            )
        build = (time.process_time() - start) / count * 1e6
        records = list(pipeline._events)
        start = time.process_time()
        size = 0
        for i in range(0, len(records), 50):
            size += len(audit_records_request(records[i : i + 50]))
        encode = (time.process_time() - start) / len(records) * 1e6
        print(f"| {values} | {outputs} | {size // len(records)} | {build:.1f} | {encode:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--concurrency", default="64,1")
    parser.add_argument("--micro", action="store_true", help="per-record CPU only (see above)")
    args = parser.parse_args()
    if args.micro:
        micro()
        return
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    model_files = write_models(tmp)
    services: list[Service] = []
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def keep(service: Service) -> Service:
        services.append(service)
        return service

    def measure(case: str, path: BenchPath, inference: Service) -> None:
        for concurrency in levels:
            before = counters(inference)
            result = run_load(path, concurrency, model_files[1], args)
            time.sleep(1.5)  # records go out in batches, at least every second
            after = counters(inference)
            result["audit"] = {
                k: after.get(k, 0.0) - before.get(k, 0.0)
                for k in after
                if after.get(k, 0.0) != before.get(k, 0.0)
            }
            result["rss_mib"] = rss_mib(inference.pid)
            results.setdefault((case, concurrency), []).append(result)
            print(
                f"  {case:<22} c={concurrency:<3} {result['req_s']:>7.0f} req/s "
                f"p50 {result['p50_ms']:.2f} ms inference {result['inference_us']:.0f} µs/req "
                f"audit {result['audit']}",
                file=sys.stderr,
                flush=True,
            )

    try:
        shared = start_shared(tmp, args.server_cpus, model_files, keep)
        inference, paths = start_stack(shared, True, keep)
        front = next(p for p in paths if p.label == "front door")
        for i in range(args.repeat):
            for rate in (0.0, 1.0) if i % 2 == 0 else (1.0, 0.0):
                asyncio.run(set_audit(shared.registry.address, rate))
                time.sleep(1.0)  # the policy reaches inference through the Watch stream
                measure("off" if rate == 0 else "rate 1", front, inference)
        asyncio.run(set_audit(shared.registry.address, 1.0))
        stop(shared.monitor)
        time.sleep(1.0)
        alone = replace(front, back=[inference], runs={})  # no monitor CPU to read
        for _ in range(args.repeat):
            measure("rate 1, monitor down", alone, inference)
    finally:
        for service in reversed(services):
            stop(service)

    print(
        f"\nPayload audit log cost — front door, endpoint {ENDPOINT} (model {MODEL}, 1 row), "
        f"closed loop; server side pinned to CPUs {args.server_cpus}, load generator to "
        f"{args.client_cpus}; {args.duration:g} s measured after {args.warmup:g} s warmup; "
        f"median of {args.repeat} runs.\n"
    )
    print(
        "| audit | c | req/s | vs off | p50 ms | p99 ms | errors | inference CPU µs/req "
        "| monitor CPU µs/req | inference RSS MiB | records (sum of runs) |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for concurrency in levels:
        base = median(results[("off", concurrency)], "req_s")
        for case in ("off", "rate 1", "rate 1, monitor down"):
            runs = results[(case, concurrency)]
            audit: dict[str, float] = {}
            for run in runs:
                for key, value in run["audit"].items():
                    audit[key] = audit.get(key, 0.0) + value
            errors = sum(int(r["errors"]) + int(r["wrong"]) for r in runs)
            monitor_cpu = f"{median(runs, 'monitor_us'):.0f}" if "monitor_us" in runs[0] else "—"
            print(
                f"| {case} | {concurrency} | {median(runs, 'req_s'):.0f} "
                f"| {median(runs, 'req_s') / base:.2f} | {median(runs, 'p50_ms'):.2f} "
                f"| {median(runs, 'p99_ms'):.2f} | {errors} | {median(runs, 'inference_us'):.0f} "
                f"| {monitor_cpu} | {max(r['rss_mib'] for r in runs):.0f} "
                f"| {', '.join(f'{k} {v:.0f}' for k, v in sorted(audit.items())) or '—'} |"
            )
    top = max(levels)
    base = median(results[("off", top)], "req_s")
    for case in ("rate 1", "rate 1, monitor down"):
        ratio = median(results[(case, top)], "req_s") / base
        print(
            f"- {case}: req/s ≥ 0.9 × off at c={top}: {ratio:.2f}× — "
            f"{'met' if ratio >= 0.9 else 'missed'}"
        )
    print(f"(logs in {tmp})")


if __name__ == "__main__":
    main()
