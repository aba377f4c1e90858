#!/usr/bin/env bash
# The GPU proof in one command (issue #19 item 6): steep against HF Trainer on a
# Llama-3.2-1B-shaped model (random init, seq 2048, bf16 autocast), plain, compiled, with
# document masking, Liger and the chunked loss, and LoRA on a Llama-3.1-8B shape. About
# 8 minutes on one H100/H200; results.md (the table for BENCHMARKS.md), results.json,
# env.txt and gpu_proof.log land in $OUT when it is set, else in ./gpu_proof_results.
#
#   benchmarks/gpu_proof.sh [gpu_proof.py options]     # e.g. --cases steep,hf-trainer
#
# Environment: PYTHON (default python3: on the lent GPU machine the one with CUDA torch),
# BUDGET_S (default 450: cases that would end past it are skipped, with that reason).
# Wheels in .whl/ (benchmarks/gpu_proof_wheels.sh fetches them where PyPI is reachable)
# are installed first, into /tmp/steep-site: steep's pydantic and liger-kernel, which the
# GPU machine's image lacks. The rest is detected: a missing package skips its case.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$PWD/gpu_proof_results}
BUDGET=${BUDGET_S:-450}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c "import pydantic, liger_kernel" 2>/dev/null; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/steep-site .whl/*.whl; then
    export PYTHONPATH=/tmp/steep-site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "installing .whl/ failed (another Python than the wheels'?): going on without them" >&2
  fi
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  echo "== gpu proof environment, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit \
    --format=csv 2>&1 || echo "nvidia-smi: not available"
  "$PY" - <<'PYEOF'
import importlib.metadata as md
import sys

import torch

print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| GPU seen:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}, "
          f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}")
for dist in ("transformers", "accelerate", "peft", "triton", "liger-kernel", "flash-attn",
             "pydantic", "tokenizers", "safetensors", "numpy", "pyarrow"):
    try:
        print(f"  {dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"  {dist} MISSING")
try:
    import steep.train.loop  # noqa: F401

    print("steep's training loop imports: ok")
except Exception as exc:  # what is missing, before any case starts
    print(f"steep's training loop does not import: {type(exc).__name__}: {exc}")
    sys.exit(3)
PYEOF
} 2>&1 | tee "$OUTDIR/env.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "the environment check failed (see above)" >&2; exit 2; }

case " $* " in
  *" --device cpu "*) ;;
  *) "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
       echo "no CUDA device seen by torch: this is a GPU benchmark (--device cpu --tiny checks its logic)" >&2
       exit 2
     } ;;
esac

# the driver skips what does not fit its budget; the outer limit is only a safety net
timeout $((${BUDGET%.*} + 120)) "$PY" benchmarks/gpu_proof.py --out "$OUTDIR" --budget-s "$BUDGET" "$@"
rc=$?
[ "$rc" -eq 0 ] || echo "gpu_proof.py exited $rc; the table holds the cases that finished" >&2
exit "$rc"
