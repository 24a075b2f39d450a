"""Imports Jittor configured for the machine it runs on; every Jittor module imports `jt` from here.

Jittor reads its configuration from environment variables at import time, so they must be set
before the first `import jittor`:
- no CUDA GPU: `nvcc_path` empty, or Jittor tries to compile CUDA kernels and fails;
- oneDNN: Jittor downloads it from its own server, which fails offline. `scripts/setup_env.sh`
  places Debian's oneDNN where Jittor looks; without it we fall back to `use_mkl=0` and say so.
On a CUDA machine nothing is changed and `jt.flags.use_cuda` is switched on (`GPU_AVAILABLE`).
"""
import os
import shutil
import sys

DNNL_HOME = os.path.join(os.path.expanduser("~"), ".cache", "jittor", "mkl", "dnnl_lnx_2.2.0_cpu_gomp")


def _has_cuda():
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != ""


def _configure():
    os.environ.setdefault("log_silent", "1")
    if not _has_cuda():
        os.environ.setdefault("nvcc_path", "")
    if "use_mkl" not in os.environ and not os.path.isfile(os.path.join(DNNL_HOME, "lib", "libmkldnn.so")):
        os.environ["use_mkl"] = "0"
        print("[jittor_env] note: oneDNN not found in %s; running with use_mkl=0 (slower CPU matmul). "
              "Run scripts/setup_env.sh to install it." % DNNL_HOME, file=sys.stderr)


_configure()
import jittor as jt  # noqa: E402  (must follow the environment set-up above)

GPU_AVAILABLE = bool(jt.has_cuda and _has_cuda())  # what --device auto / cuda go by (model.pick_device)
jt.flags.use_cuda = int(GPU_AVAILABLE)
