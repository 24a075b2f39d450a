#!/usr/bin/env bash
# The prepared device check (scripts/gpu_check.py has the details): GPU numbers for the README, offline, < 8 min.
#
#   bash scripts/gpu_data.sh                                      # here: encoded E2E into data/e2e/gpu_check (3 MB)
#   bash scripts/gpu_check.sh --data data/e2e/gpu_check          # on the GPU machine (its python3 and torch)
#   bash scripts/gpu_check.sh --smoke --out DIR --python .venv-torch/bin/python     # CPU self-test (tests)
#
# --python PY (or PYTHON=PY): the python with torch that runs the PyTorch tree (default python3); the other
# options go to scripts/gpu_check.py (--out DIR, default $OUT if set else gpu_check_out/; --budget_s; ...).
# Writes DIR/results.json, DIR/results.md and DIR/logs/; exits 1 when a run failed or beam outputs differ.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
# the device machine has only python3 and torch: the checkout itself is the install (each tree's src/ is added
# for the CLIs it starts, scripts/gpu_check.py)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py --python "$PYTHON" ${args[@]+"${args[@]}"}
