"""Where each framework's environment and entry points live: every tree runs in its own venv, never together.

The framework-free tools (pipeline, benchmark, generate) start NLG_<framework>/src/<script> with the
python of `.venv-torch` or `.venv-jittor` (scripts/setup_env.sh makes both), from NLG_<framework>/.
"""
import os
import shutil

from lora_nlg.util.errors import NLGError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENVS = {"pytorch": ".venv-torch", "jittor": ".venv-jittor"}


def framework_python(framework):
    path = os.path.join(ROOT, VENVS[framework], "bin", "python")
    if not os.path.isfile(path):
        raise NLGError(f"{path}: missing: the {framework} environment is not set up (bash scripts/setup_env.sh)")
    return path


def framework_cwd(framework):
    return os.path.join(ROOT, f"NLG_{framework}")


def framework_script(framework, name):
    return os.path.join(framework_cwd(framework), "src", name)


def launch_command(framework, script, nproc, script_args=()):
    """The command that runs `script` (a path) of a tree in `nproc` processes with the framework's own launcher:
    torchrun (`python -m torch.distributed.run --standalone`, a free port of its own) for PyTorch, Open MPI's
    mpirun for Jittor; one process is the plain python. lora_nlg.util.ranks: what the processes share."""
    python = framework_python(framework)
    if nproc == 1:
        return [python, script, *script_args]
    if framework == "pytorch":
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), script,
                *script_args]
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise NLGError(f"--nproc {nproc}: Jittor's processes start with mpirun, which is not installed (apt-get "
                       f"install openmpi-bin libopenmpi-dev; bash scripts/setup_env.sh does)")
    options = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    if nproc > (os.cpu_count() or 1):
        options.append("--oversubscribe")  # (Open MPI's default: at most one process per core)
    return [mpirun, *options, "-np", str(nproc), python, script, *script_args]
