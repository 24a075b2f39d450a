#!/usr/bin/env bash
# Fetch pretrained GPT-2 weights (Hugging Face safetensors) into pretrained_checkpoints/<name>/.
#   bash scripts/download_pretrained.sh [sm|md|lg]     (default md: GPT-2 Medium, the paper's model)
# sm -> gpt2 (124M), md -> gpt2-medium (355M), lg -> gpt2-large (774M); each folder gets model.safetensors
# and config.json, the layout both trees read (lora_nlg.checkpoints; no torch needed, so the Jittor
# environment reads the same file). The pipelines' paper / sampled presets look in pretrained_checkpoints/gpt2-medium.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
size="${1:-md}"
case "$size" in
  sm) name=gpt2; card=gpt2.sm ;;
  md) name=gpt2-medium; card=gpt2.md ;;
  lg) name=gpt2-large; card=gpt2.lg ;;
  *) echo "error: $size: unknown size (choose sm, md or lg)" >&2; exit 2 ;;
esac
base="https://huggingface.co/openai-community/$name/resolve/main"
target="$root/pretrained_checkpoints/$name"
python="$root/.venv-torch/bin/python"
[ -x "$python" ] || python="$root/.venv-jittor/bin/python"

offline_help() {
  cat >&2 <<EOF
error: $base/$1: download failed (no internet?).
To use GPT-2 without internet here, fetch on a machine that has it:
    $base/model.safetensors
    $base/config.json
and put both files in $target/ . Any GPT-2 checkpoint works too: pass it to a pipeline with
--init_checkpoint PATH (a Hugging Face folder or .safetensors / .bin file; microsoft/LoRA's old
gpt2-medium-pytorch_model.bin: convert it once with .venv-torch/bin/python scripts/convert_checkpoint.py).
Without any pretrained GPT-2, bash scripts/run_e2e.sh --preset cpu builds a small base model itself.
EOF
  rmdir "$target" 2>/dev/null || true  # leave no empty folder that looks like a checkpoint
  exit 1
}

fetch() {  # fetch URL_NAME: download into a temporary file, renamed only when complete
  local url="$base/$1" out="$target/$1"
  if [ -s "$out" ]; then echo "$out: present, not fetched again"; return; fi
  echo "fetching $url"
  if command -v curl >/dev/null; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$out.partial" "$url" || { rm -f "$out.partial"; offline_help "$1"; }
  elif command -v wget >/dev/null; then
    wget -q --tries=3 --timeout=20 -O "$out.partial" "$url" || { rm -f "$out.partial"; offline_help "$1"; }
  else
    echo "error: neither curl nor wget is installed" >&2; exit 1
  fi
  mv "$out.partial" "$out"
}

mkdir -p "$target"
fetch config.json
fetch model.safetensors
# Read it back with the project's loader: every GPT-2 tensor present with the $card shapes.
"$python" - "$target" "$card" <<'EOF'
import sys
from lora_nlg.model.config import get_card
from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights
from lora_nlg.util.errors import run_cli


def check(argv):
    weights = load_gpt2_weights(argv[0], get_card(argv[1]))
    print(f"{argv[0]}: {len(weights)} GPT-2 tensors, {sum(w.size for w in weights.values()):,} parameters ({argv[1]})")


run_cli(check, sys.argv[1:])
EOF
