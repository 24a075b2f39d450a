"""The PyTorch side of the Jittor alignment tests: a script of tests/alignment run by `.venv-torch`'s python.

The two frameworks never share a process; which python that is comes from lora_nlg.pipeline.frameworks,
as for every tool that starts a tree. Only lora_nlg and testpaths here, so the Jittor venv imports it.
"""
import pathlib
import subprocess

from lora_nlg.pipeline.frameworks import framework_python
from testpaths import script_env

ALIGNMENT = pathlib.Path(__file__).resolve().parent
ROOT = ALIGNMENT.parents[1]


def run_torch_script(name, *args, timeout=300):
    """Run tests/alignment/`name` with `args` in .venv-torch, from the repository root; a failure shows its stderr."""
    result = subprocess.run([framework_python("pytorch"), str(ALIGNMENT / name), *map(str, args)],
                            capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                            env=script_env())
    assert result.returncode == 0, result.stderr
    return result
