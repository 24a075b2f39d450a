#!/usr/bin/env bash
# Creates the two environments of the project (idempotent, offline-capable):
#   .venv-torch   from requirement_pytorch.txt (PyTorch tree, data, scorers, plots, tests)
#   .venv-jittor  from requirement_jittor.txt  (Jittor tree; never contains torch)
# and prepares Jittor for a CPU-only machine without network: oneDNN from Debian's
# libdnnl-dev is placed where Jittor looks for its own download.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

make_venv() {  # make_venv DIR REQUIREMENTS
    local dir=$1 req=$2 stamp=$1/.installed
    if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
        echo "[setup] $dir is up to date"
        return
    fi
    echo "[setup] creating $dir from $req"
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    "$dir/bin/python" -m pip install -q -r "$req" 2>&1 | grep -v "is ignored" || true
    # the repository root on the venv's path, so `import lora_nlg` works from any directory
    "$dir/bin/python" -c "import site, sys; open(site.getsitepackages()[0] + '/lora_nlg_repo.pth', 'w').write(sys.argv[1] + '\\n')" "$PWD"
    "$dir/bin/python" -c "import lora_nlg" || { echo "[setup] installing $req into $dir failed" >&2; exit 1; }
    cp "$req" "$stamp"
}

make_venv .venv-torch requirement_pytorch.txt
make_venv .venv-jittor requirement_jittor.txt
if .venv-jittor/bin/python -c "import torch" 2>/dev/null; then
    echo "[setup] .venv-jittor must not contain torch" >&2; exit 1
fi

# oneDNN for Jittor's CPU matmul/conv. Jittor downloads it from its own server at first
# import, which fails offline; Debian's build of the same library works in its place.
if ! command -v nvidia-smi >/dev/null 2>&1; then
    dnnl_home="$HOME/.cache/jittor/mkl/dnnl_lnx_2.2.0_cpu_gomp"
    if [ ! -e "$dnnl_home/lib/libmkldnn.so" ]; then
        if [ ! -e /usr/lib/x86_64-linux-gnu/libdnnl.so ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "[setup] installing Debian's libdnnl-dev for Jittor's CPU kernels"
            (apt-get install -y -q libdnnl-dev >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libdnnl-dev >/dev/null 2>&1; }) || true
        fi
        if [ -e /usr/lib/x86_64-linux-gnu/libdnnl.so ]; then
            mkdir -p "$dnnl_home/lib" "$dnnl_home/include"
            ln -sf /usr/lib/x86_64-linux-gnu/libdnnl.so "$dnnl_home/lib/libmkldnn.so"
            ln -sf /usr/lib/x86_64-linux-gnu/libdnnl.so "$dnnl_home/lib/libdnnl.so"
            cp -r /usr/include/dnnl*.h /usr/include/dnnl*.hpp /usr/include/oneapi "$dnnl_home/include/"
            echo "[setup] oneDNN placed in $dnnl_home"
        else
            echo "[setup] note: libdnnl-dev not available; Jittor will run with use_mkl=0 (slower CPU matmul)"
        fi
    fi
fi

# METEOR 1.5 and the Stanford PTB tokenizer (both scorers) run on Java.
if ! command -v java >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing a Java runtime for the METEOR scorer"
        apt-get install -y -q default-jre-headless >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q default-jre-headless >/dev/null 2>&1; } || true
    fi
    command -v java >/dev/null 2>&1 || echo "[setup] note: no java found; install a Java runtime (e.g. apt-get install default-jre-headless) for METEOR"
fi

echo "[setup] warming up Jittor (the first import compiles for a few minutes)"
.venv-jittor/bin/python -c "
import sys; sys.path.insert(0, 'NLG_jittor/src')
from jittor_env import jt
a = jt.ones((64, 64)); print('[setup] jittor', jt.__version__, 'cuda' if jt.flags.use_cuda else 'cpu', 'matmul ok:', float((a @ a).sum()) == 64.0 ** 3)
"
echo "[setup] done"
