"""How Jittor 1.3.11 must be configured on this machine, decided from plain facts (imports no framework).

Jittor reads its configuration from environment variables when it is first imported, and on the way it
downloads what it lacks (oneDNN, CUDA itself, cutt, cutlass, nccl) from its own servers, which fails
offline. NLG_jittor/src/jittor_env.py sets those variables from `decide(gather_facts())` before importing
Jittor; scripts/gpu_check.py asks the same question to know whether Jittor can run on a GPU. The decision
is a pure function of the facts, so tests call it with faked facts (a CUDA 12.4 or 13.0 toolkit, no
cuDNN 8, no GPU) without any CUDA or Jittor:

| facts                                          | decision                                                       |
|------------------------------------------------|----------------------------------------------------------------|
| no nvidia-smi, or CUDA_VISIBLE_DEVICES=""      | CPU: nvcc_path="" (Jittor would otherwise compile CUDA kernels) |
| nvcc_path="" set by the user                   | CPU                                                            |
| a GPU but no nvcc                              | CPU, with a note (Jittor would download its own CUDA)           |
| a GPU and nvcc of CUDA 11.x or 12.x            | CUDA: nvcc_path=<that nvcc>                                     |
| a GPU and nvcc of CUDA 13+ (or < 11, unreadable)| refused: one line, how to point nvcc_path at a CUDA 11/12 nvcc |
| always                                         | use_cutlass=0 (nothing here uses it; Jittor downloads it)       |
| CUDA without cuDNN 8 (e.g. cuDNN 9)            | conv_opt=1: Jittor loads only cuBLAS and cuRAND, not cuDNN 8's  |
|                                                | libcudnn_{ops,cnn}_{infer,train}.so (cuDNN 9 has no such files) |
| no oneDNN placed and no jittor-offline archive | use_mkl=0 (slower CPU matmul), with a note                     |
| not started by mpirun                          | use_mpi=0: Jittor builds and starts MPI only for an mpirun run  |
| started by mpirun with use_mpi=0 set           | refused: one line (Jittor would fail inside its import)         |

Variables the user set beforehand are never overridden (except that a refusal is still a refusal). Why the
CUDA 13 refusal: Jittor 1.3.11's helper_cuda.h reads cudaDeviceProp fields that CUDA 13 removed, it
compiles with -std=c++14 while CUDA 13's CCCL headers need C++17, and it opens cuDNN 8 library names.
"""
import glob
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field

SUPPORTED_CUDA = "11.x-12.x"
SUPPORTED_MAJORS = (11, 12)
EXAMPLE_NVCC = "/usr/local/cuda-12.x/bin/nvcc"
# where Jittor 1.3.11 looks for nvcc when the nvcc_path variable is not set (jittor/compiler.py)
NVCC_CANDIDATES = ("/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc", "/opt/cuda/bin/nvcc")
# the cuDNN 8 files Jittor 1.3.11 opens when conv_opt is 0 (jittor/compile_extern.py, setup_cuda_lib)
CUDNN8_LIBRARIES = ("libcudnn.so", "libcudnn_ops_infer.so", "libcudnn_ops_train.so", "libcudnn_cnn_infer.so",
                    "libcudnn_cnn_train.so")
JITTOR_VARIABLES = ("nvcc_path", "use_cutlass", "conv_opt", "use_mkl", "log_silent", "use_mpi")
# decided anew by each process: jittor_env removes them after the import, so that a child process (a rank that
# mpirun starts from a process that is not one) does not inherit this process's answer
PER_PROCESS = ("use_mpi",)
MPI_SIZE = "OMPI_COMM_WORLD_SIZE"  # set by Open MPI's mpirun in each process it starts (as Jittor checks)


def arch_key(machine=None):
    return "aarch64" if (machine or platform.machine()) in ("aarch64", "arm64") else "x86_64"


def dnnl_name(machine=None):
    """The oneDNN build Jittor 1.3.11 installs (and the name of its folder under ~/.cache/jittor/mkl)."""
    return "dnnl_lnx_2.2.0_cpu_gomp" + ("_aarch64" if arch_key(machine) == "aarch64" else "")


def dnnl_home(home=None, machine=None):
    return os.path.join(home or os.path.expanduser("~"), ".cache", "jittor", "mkl", dnnl_name(machine))


@dataclass(frozen=True)
class Facts:
    """What the decision depends on; `gather_facts()` reads them from the machine, tests fake them."""
    nvidia_smi: bool = False  # nvidia-smi on PATH (a driver, so a GPU)
    cuda_visible_devices: str = None  # CUDA_VISIBLE_DEVICES, None when unset
    nvcc_path: str = None  # the nvcc Jittor would use: the user's nvcc_path variable ("" = CPU), else found; None: none
    nvcc_version_output: str = ""  # `nvcc --version` of nvcc_path ("" when not run or it failed)
    cudnn_libraries: tuple = ()  # names of the libcudnn* files in the folders Jittor searches (for nvcc_path)
    cudnn_header: bool = False  # cudnn.h in the include folders Jittor searches
    dnnl_placed: bool = False  # oneDNN already where Jittor looks (lib/libmkldnn.so under dnnl_home())
    dnnl_offline: bool = False  # the jittor-offline package carries Jittor's oneDNN archive (copied, not downloaded)
    dnnl_home: str = "~/.cache/jittor/mkl/" + dnnl_name()  # where Jittor looks for oneDNN (named in the note)
    environ: dict = field(default_factory=dict)  # the JITTOR_VARIABLES the user set
    inside_mpi: bool = False  # started by mpirun (several processes, lora_nlg.util.ranks)


@dataclass
class Decision:
    device: str  # "cuda" or "cpu"
    env: dict  # variables to set before `import jittor` (only those the user has not set)
    reason: str  # one line: why this device
    notes: list = field(default_factory=list)  # lines worth telling the user (stderr)
    error: str = None  # one line; set: Jittor must not be imported (jittor_env stops with it)
    cuda_version: tuple = None  # (major, minor) of nvcc_path when read


def gpu_visible(nvidia_smi, cuda_visible_devices):
    """A CUDA GPU is usable: a driver (nvidia-smi) and CUDA_VISIBLE_DEVICES not set to empty."""
    return bool(nvidia_smi) and cuda_visible_devices != ""


def cuda_version(nvcc_version_output):
    """(major, minor) from `nvcc --version` ("release 12.4, V12.4.131" -> (12, 4)), as Jittor reads it
    (its last x.y.z number, else its last x.y); None when there is none."""
    found = re.findall(r"[0-9]+\.[0-9]+\.[0-9]+", nvcc_version_output) or re.findall(r"[0-9]+\.[0-9]+",
                                                                                     nvcc_version_output)
    if not found:
        return None
    major, minor = found[-1].split(".")[:2]
    return int(major), int(minor)


def has_cudnn8(libraries, header, major):
    """Jittor's cuDNN path works: cudnn.h and every cuDNN 8 library it opens (CUDA 11: it prefers the `.8` names)."""
    names = set(libraries)
    return header and all(name in names or (major == 11 and f"{name}.8" in names) for name in CUDNN8_LIBRARIES)


def refusal(nvcc, version):
    what = f"CUDA {version[0]}.{version[1]}" if version else "an unreadable CUDA version"
    return (f"jittor_env: {nvcc} is {what}; Jittor 1.3.11 supports CUDA {SUPPORTED_CUDA} only: point it at one "
            f"with nvcc_path={EXAMPLE_NVCC} (or nvcc_path= to run Jittor on the CPU)")


def decide(facts):
    """The Decision for `facts` (pure: no file, process or environment is read)."""
    user = facts.environ
    env, notes = {"log_silent": "1", "use_cutlass": "0"}, []
    if not facts.inside_mpi:  # else Jittor compiles its MPI operators wherever mpicc exists, and needs none here
        env["use_mpi"] = "0"
    elif user.get("use_mpi") == "0":  # Jittor would fail inside its import (in_mpi without MPI)
        return Decision("cpu", {}, "use_mpi=0 under mpirun", notes,
                        error="jittor_env: use_mpi=0 is set, but mpirun started this process: unset use_mpi")
    if "use_mkl" not in user and not facts.dnnl_placed and not facts.dnnl_offline:
        env["use_mkl"] = "0"
        notes.append(f"oneDNN not found in {facts.dnnl_home} and no jittor-offline package; running with use_mkl=0 "
                     f"(slower CPU matmul). Run scripts/setup_env.sh to install it.")

    def result(device, reason, **more):
        return Decision(device, {k: v for k, v in env.items() if k not in user}, reason, notes, **more)

    if not gpu_visible(facts.nvidia_smi, facts.cuda_visible_devices):
        env["nvcc_path"] = ""
        why = "CUDA_VISIBLE_DEVICES is empty" if facts.nvidia_smi else "no CUDA GPU (nvidia-smi not found)"
        return result("cpu", why)
    if user.get("nvcc_path") == "":
        return result("cpu", "nvcc_path is set empty")
    if not facts.nvcc_path:
        env["nvcc_path"] = ""
        notes.append(f"a GPU but no nvcc found ({', '.join(NVCC_CANDIDATES)} or on PATH): Jittor runs on the CPU; "
                     f"for CUDA install a CUDA {SUPPORTED_CUDA} toolkit and set nvcc_path={EXAMPLE_NVCC}")
        return result("cpu", "a GPU but no CUDA toolkit (nvcc) for Jittor")
    version = cuda_version(facts.nvcc_version_output)
    if version is None or version[0] not in SUPPORTED_MAJORS:
        return result("cpu", "unsupported CUDA toolkit", error=refusal(facts.nvcc_path, version),
                      cuda_version=version)
    env["nvcc_path"] = facts.nvcc_path
    if not has_cudnn8(facts.cudnn_libraries, facts.cudnn_header, version[0]):
        env["conv_opt"] = "1"
        notes.append("no cuDNN 8 found: conv_opt=1 (Jittor loads cuBLAS and cuRAND only; this project has no "
                     "convolutions)")
    return result("cuda", f"CUDA {version[0]}.{version[1]} at {facts.nvcc_path}", cuda_version=version)


# ---- reading the facts from this machine (what the decision above is tested without) ----

def toolkit_home(nvcc):
    """The CUDA toolkit folder of an nvcc (the parent of its real bin/ folder), as Jittor derives it."""
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def find_nvcc(environ):
    """The nvcc Jittor would use: the nvcc_path variable if set (may be ""), else the first of the nvcc on PATH
    and NVCC_CANDIDATES that sits in a toolkit (include/cuda_runtime.h beside its bin/; a wrapper script on PATH
    would give Jittor wrong include and library folders), else the first found; None when there is none."""
    if "nvcc_path" in environ:
        return environ["nvcc_path"]
    on_path = [os.path.join(d, "nvcc") for d in environ.get("PATH", os.defpath).split(os.pathsep) if d]
    found = [p for p in dict.fromkeys([*on_path, *NVCC_CANDIDATES]) if os.path.isfile(p) and os.access(p, os.X_OK)]
    in_toolkit = [p for p in found if os.path.isfile(os.path.join(toolkit_home(p), "include", "cuda_runtime.h"))]
    return (in_toolkit or found or [None])[0]


def nvcc_version_output(nvcc):
    try:
        return subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cudnn_search_dirs(nvcc, machine=None):
    """(library folders, include folders) where Jittor 1.3.11 looks for cuDNN given its nvcc (setup_cuda_lib)."""
    arch = arch_key(machine)
    cuda_home = toolkit_home(nvcc)
    cuda_bin = os.path.join(cuda_home, "bin")
    cuda_lib = f"/usr/lib/{arch}-linux-gnu" if nvcc == "/usr/bin/nvcc" else os.path.join(cuda_home, "lib64")
    libs = [cuda_bin, cuda_lib, os.path.join(cuda_home, "targets", f"{arch}-linux", "lib"),
            f"/usr/lib/{arch}-linux-gnu", "/usr/lib"]
    includes = [os.path.join(cuda_home, "include"), os.path.join(cuda_home, "targets", f"{arch}-linux", "include"),
                "/usr/include"]
    return libs, includes


def dnnl_offline_available(machine=None):
    """The jittor-offline package (requirement_jittor.txt) holds the oneDNN archive Jittor would download."""
    spec = importlib.util.find_spec("jittor_offline")
    if spec is None or not spec.origin:
        return False
    return os.path.isfile(os.path.join(os.path.dirname(spec.origin), dnnl_name(machine) + ".tgz"))


def gather_facts(environ=None):
    """The Facts of this machine, with `environ` (default os.environ) for the variables and PATH; runs
    `nvcc --version` only when a GPU is visible."""
    environ = os.environ if environ is None else environ
    nvidia_smi = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath)) is not None
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    nvcc = find_nvcc(environ)
    version_output, libraries, header = "", (), False
    if nvcc and gpu_visible(nvidia_smi, visible):
        version_output = nvcc_version_output(nvcc)
        lib_dirs, include_dirs = cudnn_search_dirs(nvcc)
        found = (glob.glob(os.path.join(d, "libcudnn*")) for d in lib_dirs)
        libraries = tuple(sorted({os.path.basename(path) for paths in found for path in paths}))
        header = any(os.path.isfile(os.path.join(d, "cudnn.h")) for d in include_dirs)
    return Facts(nvidia_smi=nvidia_smi, cuda_visible_devices=visible, nvcc_path=nvcc,
                 nvcc_version_output=version_output, cudnn_libraries=libraries, cudnn_header=header,
                 dnnl_placed=os.path.isfile(os.path.join(dnnl_home(), "lib", "libmkldnn.so")),
                 dnnl_offline=dnnl_offline_available(), dnnl_home=dnnl_home(),
                 environ={name: environ[name] for name in JITTOR_VARIABLES if name in environ},
                 inside_mpi=MPI_SIZE in environ)
