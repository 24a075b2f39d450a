"""Imports Jittor configured for the machine it runs on; every Jittor module imports `jt` from here.

Jittor reads its configuration from environment variables at import time, so they must be set
before the first `import jittor`. What to set is decided by lora_nlg.util.jittor_setup.decide from
facts about the machine (its table lists every case), in short:
- no CUDA GPU: `nvcc_path` empty, or Jittor tries to compile CUDA kernels and fails;
- a CUDA 11.x / 12.x toolkit: `nvcc_path` set to it, `use_cutlass=0` (Jittor would download cutlass;
  nothing here uses it), `conv_opt=1` when no cuDNN 8 is installed (Jittor opens cuDNN 8's file names);
- a CUDA 13+ toolkit: Jittor 1.3.11 cannot build against it; we stop with one line saying how to
  point `nvcc_path` at a CUDA 11.x / 12.x one;
- oneDNN, cub, cutt, nccl: Jittor copies them from the jittor-offline package (requirement_jittor.txt)
  instead of downloading; without oneDNN we fall back to `use_mkl=0` and say so.
Variables set beforehand are kept. `GPU_AVAILABLE` switches `jt.flags.use_cuda` on.
"""
import importlib
import os
import shutil
import sys

from lora_nlg.util import jittor_setup


def _has_cuda():
    return jittor_setup.gpu_visible(shutil.which("nvidia-smi") is not None, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _configure():
    decision = jittor_setup.decide(jittor_setup.gather_facts())
    if decision.error:
        raise SystemExit(decision.error)
    os.environ.update(decision.env)
    for note in decision.notes:
        print(f"[jittor_env] note: {note}", file=sys.stderr)
    return decision


DECISION = _configure()
jt = importlib.import_module("jittor")  # only now: Jittor reads the environment set above at import

for _name in jittor_setup.PER_PROCESS:  # read at import: not inherited by child processes (mpirun's ranks)
    if _name in DECISION.env:
        del os.environ[_name]

GPU_AVAILABLE = bool(jt.has_cuda and _has_cuda())  # what --device auto / cuda go by (model.pick_device)
jt.flags.use_cuda = int(GPU_AVAILABLE)
