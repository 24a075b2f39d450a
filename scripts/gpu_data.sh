#!/usr/bin/env bash
# The data the device check carries (the GPU machine reaches neither the network nor the ../shared mirror):
# the encoded E2E 18 % sample (data/prepare.py --dataset e2e), only train / valid / test.jsonl and manifest.json
# (~3.3 MB), in a folder that the device run carries and scripts/gpu_check.sh --data reads.
#
#   bash scripts/gpu_data.sh [--source ../shared/nlg_data] [--out data/e2e/gpu_check] [--python PY]
#
# The data folders are git-ignored (/data/*/): name the folder in the device run's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=../shared/nlg_data
out=data/e2e/gpu_check
PYTHON=${PYTHON:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        *) echo "usage: bash scripts/gpu_data.sh [--source DIR] [--out DIR] [--python PY]" >&2; exit 2 ;;
    esac
done
if [ -z "$PYTHON" ]; then
    if [ -x .venv-torch/bin/python ]; then PYTHON=.venv-torch/bin/python; else PYTHON=python3; fi
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" data/prepare.py --dataset e2e --source "$source_dir" \
    --out "$scratch/e2e" --vocab-dir "$scratch/vocab" --download-dir "$scratch/raw" | tail -n 1
mkdir -p "$out"
for name in train.jsonl valid.jsonl test.jsonl manifest.json; do
    cp "$scratch/e2e/$name" "$out/$name"
done
echo "[gpu_data] $(du -sh "$out" | cut -f1) in $out: $(wc -l < "$out/train.jsonl") train rows, $(wc -l < "$out/test.jsonl") test rows"
echo "[gpu_data] device run: carry [\"$out\"], command: bash scripts/gpu_check.sh --data $out"
