#!/usr/bin/env bash
# The GPU check: one command, one JSON object on stdout (progress on stderr), a few minutes on one
# H100. Needs torch and torchvision, PyYAML, numpy (no Ray, Optuna or plotly); pydantic comes from
# .gpu/wheels when the machine lacks it, Fashion-MNIST from .gpu/data when present (see
# benchmarks/gpu_prepare.sh and docs/performance.md).
#   bash benchmarks/gpu_check.sh [--no-compile] [--device cuda] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import pydantic" 2>/dev/null; then
  [ -d .gpu/wheels ] || { echo "pydantic is missing: run benchmarks/gpu_prepare.sh and carry .gpu/" >&2; exit 2; }
  SITE=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .gpu/wheels/*.whl >&2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
ARGS=()
[ -d .gpu/data/fashion-mnist ] && ARGS+=(--data-root .gpu/data)
exec "$PY" -m ltsearch.bench.gpu_check ${ARGS[@]+"${ARGS[@]}"} "$@"
