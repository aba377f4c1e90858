#!/usr/bin/env bash
# Fetch, on a machine that reaches PyPI, the wheels the GPU proof needs and the lent GPU
# machine lacks (it has torch, transformers, accelerate, peft and triton, and no network):
# steep's pydantic and its parts, and liger-kernel for the Liger cases. They land in .whl/
# (ignored through .git/info/exclude); the device call carries .whl and gpu_proof.sh
# installs them into /tmp/steep-site. flash-attn is not among them: PyPI has only its
# source, which builds against one torch and CUDA, so its case is skipped with that reason.
#
#   benchmarks/gpu_proof_wheels.sh          # then: run(command=..., carry=[".whl"])
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")" .whl
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"

# the versions steep is tested with here (its venv), so both machines run the same ones
pin() { "$PY" -c "import importlib.metadata as m; print('$1==' + m.version('$1'))"; }
wheels=(
  "$(pin pydantic)" "$(pin pydantic_core)" "$(pin annotated-types)"
  "$(pin typing-inspection)" "$(pin typing_extensions)"
  "liger-kernel==${LIGER_VERSION:-0.8.5}"
)
# the device's python3 is CPython 3.12 on x86-64 Linux (see the device notes)
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${wheels[@]}"
ls -l .whl
