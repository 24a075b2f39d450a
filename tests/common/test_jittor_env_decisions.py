"""How NLG_jittor/src/jittor_env.py configures Jittor, decided from faked facts: lora_nlg.util.jittor_setup.decide
is a pure function, so a CUDA 12.4 or 13.0 toolkit, cuDNN 8 or 9 and a GPU are faked here without CUDA and
without importing Jittor (this runs in .venv-torch, which has no Jittor)."""
import os
import stat
import sys

import pytest

from lora_nlg.util import jittor_setup
from lora_nlg.util.jittor_setup import Facts, decide

NVCC_12_4 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.4, V12.4.131\n"
NVCC_13_0 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"
NVCC_11_8 = "Cuda compilation tools, release 11.8, V11.8.89\n"
CUDNN8 = ("libcudnn.so", "libcudnn.so.8", "libcudnn_cnn_infer.so", "libcudnn_cnn_train.so", "libcudnn_ops_infer.so",
          "libcudnn_ops_train.so")
CUDNN9 = ("libcudnn.so", "libcudnn.so.9", "libcudnn_cnn.so", "libcudnn_engines_precompiled.so", "libcudnn_ops.so")


def gpu(version_output, cudnn=CUDNN8, nvcc="/usr/local/cuda-12.4/bin/nvcc", **more):
    return Facts(nvidia_smi=True, nvcc_path=nvcc, nvcc_version_output=version_output, cudnn_libraries=cudnn,
                 cudnn_header=True, dnnl_placed=True, **more)


def test_cuda_12_4_turns_cuda_on_without_cutlass():
    decision = decide(gpu(NVCC_12_4))
    assert decision.error is None
    assert decision.device == "cuda" and decision.cuda_version == (12, 4)
    assert decision.env == {"log_silent": "1", "use_cutlass": "0", "use_mpi": "0",
                            "nvcc_path": "/usr/local/cuda-12.4/bin/nvcc"}
    assert decision.notes == []


def test_cuda_11_8_with_cudnn_8_versioned_names_only():
    """CUDA 11: Jittor prefers the .8 names, so versioned files alone are enough there (not with CUDA 12)."""
    versioned = tuple(f"{name}.8" for name in jittor_setup.CUDNN8_LIBRARIES)
    assert "conv_opt" not in decide(gpu(NVCC_11_8, cudnn=versioned)).env
    assert decide(gpu(NVCC_12_4, cudnn=versioned)).env["conv_opt"] == "1"


@pytest.mark.parametrize("output, version", [(NVCC_13_0, "CUDA 13.0"), ("release 10.2, V10.2.89", "CUDA 10.2"),
                                             ("", "an unreadable CUDA version")])
def test_unsupported_toolkit_is_one_line_refusal(output, version):
    decision = decide(gpu(output, nvcc="/usr/local/cuda/bin/nvcc"))
    assert decision.error == (f"jittor_env: /usr/local/cuda/bin/nvcc is {version}; Jittor 1.3.11 supports CUDA "
                              f"11.x-12.x only: point it at one with nvcc_path=/usr/local/cuda-12.x/bin/nvcc "
                              f"(or nvcc_path= to run Jittor on the CPU)")
    assert "\n" not in decision.error


def test_cuda_13_refused_even_when_named_explicitly():
    facts = gpu(NVCC_13_0, nvcc="/opt/cuda-13/bin/nvcc", environ={"nvcc_path": "/opt/cuda-13/bin/nvcc"})
    assert decide(facts).error.startswith("jittor_env: /opt/cuda-13/bin/nvcc is CUDA 13.0;")


def test_no_nvidia_smi_means_cpu_even_with_a_cuda_13_toolkit():
    """This machine: a CUDA 13 toolkit but no driver; Jittor must run on the CPU, not refuse."""
    decision = decide(Facts(nvidia_smi=False, nvcc_path="/usr/local/cuda/bin/nvcc", dnnl_placed=True))
    assert decision.error is None and decision.device == "cpu"
    assert decision.env == {"log_silent": "1", "use_cutlass": "0", "use_mpi": "0", "nvcc_path": ""}


@pytest.mark.parametrize("facts, reason", [
    (Facts(), "no CUDA GPU (nvidia-smi not found)"),
    (Facts(nvidia_smi=True, cuda_visible_devices="", nvcc_path="/usr/local/cuda/bin/nvcc"),
     "CUDA_VISIBLE_DEVICES is empty"),
    (Facts(nvidia_smi=True, nvcc_path=None), "a GPU but no CUDA toolkit (nvcc) for Jittor"),
])
def test_cpu_cases_set_nvcc_path_empty(facts, reason):
    decision = decide(facts)
    assert decision.device == "cpu" and decision.reason == reason and decision.error is None
    assert decision.env["nvcc_path"] == ""


def test_gpu_without_nvcc_says_how_to_get_cuda():
    """Jittor would download its own CUDA (jittor_utils.install_cuda), which fails offline: CPU and a note."""
    notes = decide(Facts(nvidia_smi=True, dnnl_placed=True)).notes
    assert len(notes) == 1 and "nvcc_path=/usr/local/cuda-12.x/bin/nvcc" in notes[0]


def test_user_nvcc_path_empty_means_cpu_and_is_kept():
    decision = decide(gpu(NVCC_13_0, nvcc="", environ={"nvcc_path": ""}))
    assert decision.device == "cpu" and decision.error is None and "nvcc_path" not in decision.env


@pytest.mark.parametrize("cudnn, header", [(CUDNN9, True), ((), False), (CUDNN8, False), (CUDNN8[:-1], True)])
def test_no_cudnn_8_means_conv_opt_1(cudnn, header):
    facts = Facts(nvidia_smi=True, nvcc_path="/usr/local/cuda-12.4/bin/nvcc", nvcc_version_output=NVCC_12_4,
                  cudnn_libraries=cudnn, cudnn_header=header, dnnl_placed=True)
    decision = decide(facts)
    assert decision.device == "cuda" and decision.env["conv_opt"] == "1" and decision.env["use_cutlass"] == "0"
    assert any("conv_opt=1" in note for note in decision.notes)


def test_variables_the_user_set_are_kept():
    facts = gpu(NVCC_12_4, cudnn=CUDNN9, environ={"use_cutlass": "1", "conv_opt": "0", "log_silent": "0",
                                                  "use_mpi": "1"})
    assert decide(facts).env == {"nvcc_path": "/usr/local/cuda-12.4/bin/nvcc"}


def test_mpi_is_built_and_started_only_under_mpirun():
    assert decide(Facts()).env["use_mpi"] == "0"
    assert "use_mpi" not in decide(Facts(inside_mpi=True)).env
    assert "unset use_mpi" in decide(Facts(inside_mpi=True, environ={"use_mpi": "0"})).error
    assert jittor_setup.PER_PROCESS == ("use_mpi",)  # jittor_env removes it after the import: not inherited
    assert jittor_setup.gather_facts({"OMPI_COMM_WORLD_SIZE": "2", "PATH": ""}).inside_mpi
    assert not jittor_setup.gather_facts({"PATH": ""}).inside_mpi


@pytest.mark.parametrize("placed, offline, use_mkl", [(True, False, None), (False, True, None), (False, False, "0")])
def test_onednn_from_placement_or_jittor_offline_else_use_mkl_0(placed, offline, use_mkl):
    decision = decide(Facts(dnnl_placed=placed, dnnl_offline=offline))
    assert decision.env.get("use_mkl") == use_mkl
    assert len(decision.notes) == (1 if use_mkl else 0)
    assert "use_mkl" not in decide(Facts(environ={"use_mkl": "1"})).env


def test_cuda_version_is_read_as_jittor_reads_it():
    assert jittor_setup.cuda_version(NVCC_12_4) == (12, 4)
    assert jittor_setup.cuda_version(NVCC_13_0) == (13, 0)
    assert jittor_setup.cuda_version("release 12.1") == (12, 1)
    assert jittor_setup.cuda_version("no numbers") is None


def executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize("release, device", [("12.4", "cuda"), ("13.0", "refused")])
def test_gather_facts_on_a_faked_machine(tmp_path, release, device):
    """gather_facts + decide end to end on fake nvidia-smi / nvcc scripts (Jittor is not imported)."""
    toolkit = tmp_path / f"cuda-{release}"
    nvcc = executable(toolkit / "bin" / "nvcc", f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, "
                                               f"V{release}.1'\n")
    (toolkit / "include").mkdir()
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    (toolkit / "lib64").mkdir()
    for name in CUDNN9:
        (toolkit / "lib64" / name).write_text("")
    # a wrapper script first on PATH (as /usr/local/bin/nvcc on some machines): the toolkit's own nvcc is chosen
    wrapper = executable(tmp_path / "wrapper" / "nvcc", f"#!/bin/sh\nexec {nvcc} \"$@\"\n")
    executable(tmp_path / "driver" / "nvidia-smi", "#!/bin/sh\n")
    path = os.pathsep.join([str(wrapper.parent), str(toolkit / "bin"), str(tmp_path / "driver"),
                            os.path.dirname(sys.executable), "/usr/bin", "/bin"])
    facts = jittor_setup.gather_facts({"PATH": path})
    assert facts.nvidia_smi and facts.nvcc_path == str(nvcc)
    assert set(CUDNN9) <= set(facts.cudnn_libraries)
    decision = decide(facts)
    if device == "cuda":
        assert decision.device == "cuda" and decision.env["nvcc_path"] == str(nvcc)
        assert decision.env["conv_opt"] == "1" and decision.env["use_cutlass"] == "0"
    else:
        assert decision.error.startswith(f"jittor_env: {nvcc} is CUDA 13.0; Jittor 1.3.11 supports CUDA 11.x-12.x")
    facts = jittor_setup.gather_facts({"PATH": path, "CUDA_VISIBLE_DEVICES": ""})
    assert decide(facts).device == "cpu" and decide(facts).error is None

