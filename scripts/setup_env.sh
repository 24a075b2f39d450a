#!/usr/bin/env bash
# Creates the two environments of the project (idempotent, offline-capable):
#   .venv-torch   from requirement_pytorch.txt (PyTorch tree, data, scorers, plots, tests)
#   .venv-jittor  from requirement_jittor.txt  (Jittor tree; never contains torch)
# and Jittor for a machine without network: what Jittor downloads at first use comes from the
# jittor-offline package instead (NLG_jittor/src/jittor_env.py sets Jittor's variables, see
# lora_nlg/util/jittor_setup.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

make_venv() {  # make_venv DIR REQUIREMENTS TREE
    local dir=$1 req=$2 tree=$3 stamp=$1/.installed
    if [ -f "$stamp" ] && cmp -s "$req" "$stamp" && installed_here "$dir" "$tree"; then
        echo "[setup] $dir is up to date"
        return
    fi
    echo "[setup] creating $dir from $req"
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    "$dir/bin/python" -m pip install -q -r "$req" 2>&1 | grep -v "is ignored" || true
    # lora_nlg (pyproject.toml) and the framework's tree (TREE/pyproject.toml), editable: imports work from any
    # directory and follow this checkout; setuptools comes from the requirements (no download here)
    rm -f "$("$dir/bin/python" -c "import site; print(site.getsitepackages()[0])")/lora_nlg_repo.pth"  # older set-ups
    "$dir/bin/python" -m pip install -q --no-build-isolation --no-deps -e . -e "$tree" >"$dir/.editable.log" 2>&1 || true
    installed_here "$dir" "$tree" || { cat "$dir/.editable.log" >&2; echo "[setup] installing $req into $dir failed" >&2; exit 1; }
    cp "$req" "$stamp"
}

installed_here() {  # installed_here DIR TREE: lora_nlg and TREE's modules resolve to this checkout (nothing imported)
    "$1/bin/python" -c "
import os, sys
from importlib.util import find_spec
found = [find_spec(name) for name in ('lora_nlg', 'gpt2_ft')]
sys.exit(None in found or [found[0].submodule_search_locations[0], os.path.dirname(found[1].origin)]
         != [os.path.abspath('lora_nlg'), os.path.abspath(os.path.join(sys.argv[1], 'src'))])" "$2" 2>/dev/null
}

make_venv .venv-torch requirement_pytorch.txt NLG_pytorch
make_venv .venv-jittor requirement_jittor.txt NLG_jittor
if .venv-jittor/bin/python -c "import torch" 2>/dev/null; then
    echo "[setup] .venv-jittor must not contain torch" >&2; exit 1
fi

# oneDNN for Jittor's CPU matmul, and cub / cutt / nccl for its CUDA build: Jittor downloads them from its own
# server at first import, which fails offline; the jittor-offline package (requirement_jittor.txt) carries the
# same archives (same md5) and Jittor copies them from there. A machine set up before keeps the oneDNN placed
# in ~/.cache/jittor/mkl from Debian's libdnnl-dev (its compiled kernels link it); nothing is changed there.
if ! .venv-jittor/bin/python -c "from lora_nlg.util.jittor_setup import dnnl_offline_available as ok; exit(not ok())"; then
    echo "[setup] jittor-offline (Jittor's oneDNN / cub / cutt / nccl archives) is missing from .venv-jittor" >&2
    exit 1
fi

# METEOR 1.5 and the Stanford PTB tokenizer (both scorers) run on Java.
if ! command -v java >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing a Java runtime for the METEOR scorer"
        apt-get install -y -q default-jre-headless >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q default-jre-headless >/dev/null 2>&1; } || true
    fi
    command -v java >/dev/null 2>&1 || echo "[setup] note: no java found; install a Java runtime (e.g. apt-get install default-jre-headless) for METEOR"
fi

# Open MPI for several processes in the Jittor tree (mpirun, and mpicc to build Jittor's MPI operators; Jittor
# builds them only in a run that mpirun started, lora_nlg.util.jittor_setup). PyTorch's torchrun needs nothing more.
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing Open MPI (mpirun, mpicc) for Jittor's several-process runs"
        apt-get install -y -q openmpi-bin libopenmpi-dev >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q openmpi-bin libopenmpi-dev >/dev/null 2>&1; } || true
    fi
    command -v mpirun >/dev/null 2>&1 || echo "[setup] note: no mpirun found; install Open MPI (e.g. apt-get install openmpi-bin libopenmpi-dev) for --nproc in the Jittor tree"
fi

echo "[setup] warming up Jittor (the first import compiles for a few minutes)"
.venv-jittor/bin/python -c "
from jittor_env import jt
a = jt.ones((64, 64)); print('[setup] jittor', jt.__version__, 'cuda' if jt.flags.use_cuda else 'cpu', 'matmul ok:', float((a @ a).sum()) == 64.0 ** 3)
"
echo "[setup] done"
