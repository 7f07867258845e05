#!/usr/bin/env bash
# The CUDA path in one command, for a machine with an NVIDIA GPU (under 10 minutes):
#   1. installs the GPU extra (onnxruntime-gpu with the CUDA 13 / cuDNN 9 user-space wheels);
#   2. proves CUDAExecutionProvider is selected for a real session (not just listed);
#   3. in-process rows/s per batch size 1…128 on CUDA beside CPU (bench/ort_limit.py);
#   4. the inference service on --device gpu beside --device cpu, mlp at c=1 and c=64 and
#      cnn_small at c=64 (bench/run.py: every answer checked against onnxruntime);
#   5. the fp16 and int8 derivatives on CUDA (bench/optimize_bench.py).
# Without a usable GPU it says so and runs the CPU branch of each step (that is what CI
# can check: `bash bench/gpu.sh --cpu-only --smoke`, which tests/unit/test_gpu_script.py runs).
#
#   bash bench/gpu.sh [--cpu-only] [--quick] [--smoke] [--no-install]
# --quick: short timings; --smoke: shortest timings, no install, no service benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

CPU_ONLY=0 QUICK=0 INSTALL=1 SERVICE=1
for arg in "$@"; do
  case "$arg" in
    --cpu-only) CPU_ONLY=1 ;;
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --smoke) QUICK=2 INSTALL=0 SERVICE=0 ;;
    *) echo "unknown option $arg (use --cpu-only, --quick, --smoke, --no-install)" >&2; exit 2 ;;
  esac
done

PY=.venv/bin/python
if [ "$INSTALL" = 1 ]; then
  if [ "$CPU_ONLY" = 1 ]; then make proto >/dev/null; else make proto INFERENCE_EXTRAS=score,gpu >/dev/null; fi
fi

DURATION=4 REPEAT=2 SECONDS_PER_BATCH=1.0
if [ "$QUICK" = 1 ]; then DURATION=1 REPEAT=1 SECONDS_PER_BATCH=0.2; fi
if [ "$QUICK" = 2 ]; then DURATION=1 REPEAT=1 SECONDS_PER_BATCH=0.02; fi

echo "== 1. execution providers"
CUDA=$($PY - "$CPU_ONLY" <<'EOF'
import sys
import numpy as np
import onnxruntime as ort
sys.path.insert(0, "bench")
from models import mlp

print(f"onnxruntime {ort.__version__}, available: {ort.get_available_providers()}", file=sys.stderr)
if sys.argv[1] == "1" or "CUDAExecutionProvider" not in ort.get_available_providers():
    print("no")
    raise SystemExit
try:
    session = ort.InferenceSession(
        mlp().onnx_bytes, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    session.run(None, {"input": np.zeros((4, 256), np.float32)})
except Exception as exc:  # the provider is listed but its libraries do not load
    print(f"CUDA listed but unusable: {exc}", file=sys.stderr)
    print("no")
    raise SystemExit
used = session.get_providers()
print(f"session providers: {used}", file=sys.stderr)
print("yes" if used[0] == "CUDAExecutionProvider" else "no")
EOF
)
if [ "$CUDA" = yes ]; then
  echo "CUDAExecutionProvider selected"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  DEVICES="cpu gpu"
  PROVIDERS="CUDAExecutionProvider,CPUExecutionProvider"
else
  echo "no usable GPU: CPU branch only"
  DEVICES="cpu"
  PROVIDERS="CPUExecutionProvider"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
$PY bench/models.py "$WORK/models" >/dev/null

echo
echo "== 2. in-process rows/s per batch size (onnxruntime, 1 intra-op thread)"
$PY - "$WORK/models" "$PROVIDERS" "$SECONDS_PER_BATCH" <<'EOF'
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

models, providers, seconds = Path(sys.argv[1]), sys.argv[2].split(","), float(sys.argv[3])
batches = (1, 2, 4, 8, 16, 32, 64, 128)
print("| model | provider | " + " | ".join(f"b{b}" for b in batches) + " |")
print("|---" * (len(batches) + 2) + "|")
for name in ("mlp", "cnn_small"):
    for provider in providers:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(models / f"{name}.onnx"), options, providers=[provider])
        (inp,) = session.get_inputs()
        rng = np.random.default_rng(0)
        cells = []
        for batch in batches:
            x = rng.standard_normal((batch, *[int(d) for d in inp.shape[1:]])).astype(np.float32)
            for _ in range(3):
                session.run(None, {inp.name: x})
            runs, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                session.run(None, {inp.name: x})
                runs += 1
            cells.append(f"{runs * batch / elapsed:,.0f}")
        print(f"| {name} | {provider} | " + " | ".join(cells) + " |")
EOF

echo
echo "== 3. the inference service, device by device (bench/run.py)"
[ "$SERVICE" = 1 ] || DEVICES=""
for device in $DEVICES; do
  echo "-- --device $device"
  $PY bench/run.py --device "$device" --only "mlp c1,mlp c64,cnn_small c64" \
    --duration "$DURATION" --warmup 1 --repeat "$REPEAT" --server-cores 0 --client-cores 1
done

echo
echo "== 4. derivatives on $PROVIDERS (bench/optimize_bench.py)"
$PY bench/optimize_bench.py --providers "$PROVIDERS" --rows 256 \
  --budget "$SECONDS_PER_BATCH" 2>/dev/null | sed -n '/^|/p;/^ratios/p'
