#!/usr/bin/env bash
# THE test command: sets up both environments if needed, then runs
#   - framework-free and PyTorch tests in .venv-torch,
#   - Jittor and cross-framework alignment tests in .venv-jittor (which has no torch;
#     alignment tests obtain PyTorch reference values by running .venv-torch/bin/python
#     in a subprocess, so the two frameworks never share a process).
# Extra arguments go to both pytest runs (e.g. -x, -k name).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || exit 1
status=0
echo "== .venv-torch: tests/common tests/NLG_pytorch"
.venv-torch/bin/python -m pytest -q tests/common tests/NLG_pytorch "$@" || status=1
echo "== .venv-jittor: tests/NLG_jittor"
.venv-jittor/bin/python -m pytest -q tests/NLG_jittor "$@" || status=1
exit $status
