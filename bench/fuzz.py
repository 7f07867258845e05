"""Property-based fuzzing at volume: the properties of tests/fuzz (one implementation,
tests/fuzz/targets.py) with 10,000 examples per target by default, random each run.

Targets: the tensor decoders (convert.infer_request → codec), ModelInfer on a real
inference server, the routing headers inference reads, Envoy's routing filter (a dynamic module) through
a real Envoy (arbitrary bytes as gRPC bodies), resource names, endpoint validation and
CreateEndpoint/UpdateEndpoint on a real registry, the REST parser and the REST servicer.
The rule: any input gets a status other than INTERNAL (or UNKNOWN, DATA_LOSS, an
unhandled exception, a wrong answer, a hang, a crash), and every server is healthy after
each batch of examples (health SERVING, a valid request answered right).

Prints one markdown table: target, examples, statuses seen (counts by code), bad
(INTERNAL and the like), healthy after, elapsed; then the first bad outcome of each
target that had one. Exit status 1 when any bad outcome or unhealthy server was seen.

    .venv/bin/python bench/fuzz.py                       # 10,000 per target
    .venv/bin/python bench/fuzz.py --examples 500 --only rest-parser,envoy-routing-filter
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# gRPC core's INFO lines (a GOAWAY per closed connection) would bury the table.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from tests.fuzz.harness import (  # noqa: E402
    BAD_LABELS,
    BAD_PREFIXES,
    FrontDoorStack,
    InferenceStack,
    LoopThread,
    RegistryStack,
)
from tests.fuzz.targets import TARGETS, Target, bench_settings, run_target  # noqa: E402

STACKS = {"inference": InferenceStack, "registry": RegistryStack, "front_door": FrontDoorStack}


def _bad(label: str) -> bool:
    return label in BAD_LABELS or label.startswith(BAD_PREFIXES)


def fuzz(target: Target, stack: Any, examples: int, batch: int) -> dict[str, Any]:
    """Run `examples` examples in batches, checking the server's health after each."""
    seen: Counter[str] = Counter()
    bad: list[tuple[Any, Any]] = []
    details: dict[str, str] = {}
    healthy, unhealthy = True, ""
    started = time.monotonic()
    left = examples
    while left > 0:
        count = min(batch, left)
        config = bench_settings(count)
        seen.update(run_target(target, stack, config, strict=False, bad=bad, details=details))
        left -= count
        if stack is not None:
            try:
                stack.assert_healthy()
            except Exception as exc:  # report it, and stop this target
                healthy, unhealthy = False, f"unhealthy: {exc!r}"
                break
    report = [f"{outcome}\n  example: {example!r}"[:3000] for example, outcome in bad]
    if unhealthy:
        report.append(unhealthy)
    return {
        "seen": seen,
        "healthy": healthy,
        "bad": report,
        "details": details,
        "elapsed": time.monotonic() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="per target")
    parser.add_argument("--batch", type=int, default=2_000, help="health check every N")
    parser.add_argument(
        "--only", default="", help="comma-separated targets: " + ", ".join(t.slug for t in TARGETS)
    )
    parser.add_argument(
        "--explain", action="store_true", help="print a message of each status seen"
    )
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.only or t.slug in args.only.split(",")]
    if not chosen:
        parser.error(f"no target named {args.only!r}")
    # JSON numbers past FP16/FP32's range become inf (numpy warns on each).
    warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)

    loop = LoopThread()
    stacks: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelhub-fuzz-") as tmp:
        try:
            for target in chosen:
                stack = None
                if target.stack is not None:
                    if target.stack not in stacks:
                        root = Path(tmp) / target.stack
                        root.mkdir()
                        stacks[target.stack] = STACKS[target.stack](loop, root)
                    stack = stacks[target.stack]
                result = fuzz(target, stack, args.examples, args.batch)
                rows.append((target, result))
                seen = result["seen"]
                print(
                    f"{target.slug}: {sum(seen.values())} examples, {dict(seen)}, "
                    f"{result['elapsed']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            for stack in stacks.values():
                stack.close()
            loop.close()

    print("| target | examples | statuses seen | INTERNAL (bad) | healthy after | elapsed |")
    print("|---|---:|---|---:|---|---:|")
    failed = False
    for target, result in rows:
        seen = result["seen"]
        bad = sum(n for label, n in seen.items() if _bad(label))
        statuses = ", ".join(f"{label} {n}" for label, n in seen.most_common())
        healthy = "yes" if result["healthy"] else "NO"
        if target.stack is None:
            healthy = "n/a (pure)"
        failed |= bad > 0 or not result["healthy"]
        print(
            f"| {target.name} | {sum(seen.values())} | {statuses} | {bad} | {healthy} "
            f"| {result['elapsed']:.0f} s |"
        )
    if args.explain:
        print("\nA message of each status seen (the first one):\n")
        for target, result in rows:
            for label, detail in sorted(result["details"].items()):
                if label != "OK":
                    print(f"- {target.name}, {label}: {' '.join(detail.split())[:160]}")
    for target, result in rows:
        for report in result["bad"]:
            print(f"\n{target.name}: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
