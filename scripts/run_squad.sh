#!/usr/bin/env bash
# SQuAD v1.1: prepare -> train -> beam -> decode -> score, in PyTorch and/or Jittor (scripts/pipeline.py).
#   bash scripts/run_squad.sh [--framework pytorch|jittor|both] [--preset paper|sampled|cpu] [--source DIR]
#                   [--init_checkpoint PATH]    (all flags: python scripts/pipeline.py --help)
# Re-running skips the stages that finished; outputs go to trained_models/<setup>/squad/<framework>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv-torch/bin/python"  # the driver is framework-free: either environment runs it
[ -x "$python" ] || python="$root/.venv-jittor/bin/python"
exec "$python" "$root/scripts/pipeline.py" --dataset squad "$@"
