#!/usr/bin/env bash
# All four datasets (and E2E's q,v / full fine-tuning variants) in both frameworks, then one summary.md
# (scripts/run_all.py):
#   bash scripts/run_all.sh --preset cpu --source ../shared/nlg_data    (all flags: python scripts/run_all.py --help)
# Re-running skips the stages that finished; outputs go to trained_models/<setup>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv-torch/bin/python"  # the driver is framework-free: either environment runs it
[ -x "$python" ] || python="$root/.venv-jittor/bin/python"
exec "$python" "$root/scripts/run_all.py" "$@"
