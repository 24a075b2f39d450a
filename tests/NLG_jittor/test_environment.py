"""The Jittor venv: no torch in it, Jittor configured automatically, shared code importable."""
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np

from lora_nlg.util import jittor_setup

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_torch_is_absent():
    assert importlib.util.find_spec("torch") is None


def test_jittor_matmul_matches_numpy():
    from jittor_env import jt
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 48)).astype("float32"), rng.standard_normal((48, 32)).astype("float32")
    np.testing.assert_allclose((jt.array(a) @ jt.array(b)).numpy(), a @ b, rtol=1e-5, atol=1e-5)


def test_shared_modules_import_here():
    for p in sorted((ROOT / "lora_nlg").rglob("*.py")):
        importlib.import_module(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))


# the archives Jittor 1.3.11 checks before using a download (jittor/compile_extern.py), as jittor-offline has them
OFFLINE_MD5 = {"dnnl_lnx_2.2.0_cpu_gomp.tgz": "35bbbdf550a9d8ad54db798e372000f6",
               "cub-1.11.0.tgz": "97196a885598e40592100e1caaf3d5ea",
               "cutt-1.2.zip": "14d0fd1132c8cd657dc3cf29ce4db931",
               "nccl.tgz": "900666558c5bc43e0a5e84045b88a06f"}


def test_jittor_offline_carries_what_jittor_would_download():
    spec = importlib.util.find_spec("jittor_offline")
    assert spec is not None, "jittor-offline missing: bash scripts/setup_env.sh"
    folder = pathlib.Path(spec.origin).parent
    assert {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in OFFLINE_MD5} == OFFLINE_MD5
    from lora_nlg.util.jittor_setup import dnnl_offline_available
    assert dnnl_offline_available()


def test_configured_as_decided():
    """This process's Jittor got the variables jittor_setup decided (cutlass off; on a machine without a GPU, CPU)."""
    from jittor import compile_extern

    import jittor_env
    for name, value in jittor_env.DECISION.env.items():
        if name in jittor_setup.PER_PROCESS:  # read at import, then removed (not inherited by children)
            assert name not in os.environ
        else:
            assert os.environ[name] == value
    assert compile_extern.use_mpi is (jittor_env.DECISION.env.get("use_mpi") != "0")  # no mpirun: no MPI
    if shutil.which("nvidia-smi") is None:
        assert jittor_env.DECISION.device == "cpu" and os.environ["nvcc_path"] == ""
        assert not jittor_env.GPU_AVAILABLE and not jittor_env.jt.flags.use_cuda


def _executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_cuda_13_toolkit_stops_with_one_line_before_jittor_is_imported(tmp_path):
    """A faked GPU (nvidia-smi) with a faked CUDA 13 nvcc: jittor_env exits with the one-line refusal and has not
    imported Jittor (no faked CUDA ever reaches Jittor)."""
    toolkit = tmp_path / "cuda-13.0"
    _executable(toolkit / "bin" / "nvcc", "#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    (toolkit / "include").mkdir()
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    _executable(tmp_path / "driver" / "nvidia-smi", "#!/bin/sh\nexit 0\n")
    env = {k: v for k, v in os.environ.items() if k not in ("nvcc_path", "CUDA_VISIBLE_DEVICES")}
    env["PATH"] = os.pathsep.join([str(toolkit / "bin"), str(tmp_path / "driver"), "/usr/bin", "/bin"])
    code = ("import sys\ntry:\n    import jittor_env\nexcept SystemExit:\n"
            "    assert 'jittor' not in sys.modules and 'jittor_utils' not in sys.modules\n    raise\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"jittor_env: {toolkit / 'bin' / 'nvcc'} is CUDA 13.0; Jittor 1.3.11 supports CUDA 11.x-12.x only: point it "
        f"at one with nvcc_path=/usr/local/cuda-12.x/bin/nvcc (or nvcc_path= to run Jittor on the CPU)"]
