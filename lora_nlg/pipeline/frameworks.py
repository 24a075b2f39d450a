"""Where each framework's environment and entry points live: every tree runs in its own venv, never together.

The framework-free tools (pipeline, benchmark, generate) start NLG_<framework>/src/<script> with the
python of `.venv-torch` or `.venv-jittor` (scripts/setup_env.sh makes both), from NLG_<framework>/.
"""
import os

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
