"""What the test command needs from a machine, checked before any test (tests/conftest.py): missing Java, a missing
.venv-torch for the Jittor tests, or no way to get the reference data stop the run with one line saying what to
install, instead of a failure deep inside some test."""
import subprocess
import sys

import testpaths
from lora_nlg.pipeline import frameworks
from testpaths import ROOT

QUICK = str(ROOT / "tests" / "common" / "test_mirrors.py")  # any short test file: the check runs first


def exit_line(env):
    """The one line pytest ends with when the session-start check refuses, and its exit code."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", QUICK], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Exit: ")]
    return result.returncode, lines


def test_missing_java_is_one_line_naming_what_to_install():
    code, lines = exit_line({**testpaths.os.environ, "PATH": "/nonexistent"})
    assert code == 3
    assert lines == ["Exit: tests cannot run: java: not found on PATH; the METEOR and PTB-tokenizer tests need it: "
                     "install a Java runtime, e.g. `apt-get install default-jre-headless`"]


def test_no_mirror_and_no_download_is_one_line_naming_the_ways_to_get_the_data(tmp_path):
    env = {**testpaths.os.environ, "LORA_NLG_SHARED": str(tmp_path / "shared"), "LORA_NLG_CACHE": str(tmp_path),
           "LORA_NLG_DOWNLOAD_URL": "http://127.0.0.1:9/"}  # nothing listens on port 9
    env.pop("LORA_NLG_MIRROR", None)
    code, lines = exit_line(env)
    assert code == 3
    assert lines == [f"Exit: tests cannot run: http://127.0.0.1:9/vocab/encoder.json: download failed ([Errno 111] "
                     f"Connection refused); offline? use --source DIR (a local mirror) (the tests need the data "
                     f"mirror: ../shared/nlg_data beside the clone, LORA_NLG_SHARED, or a download into "
                     f"{tmp_path / 'nlg_data'})"]


def test_jittor_tests_without_venv_torch_name_the_setup_script(monkeypatch, tmp_path):
    """In the Jittor venv (no torch) with no .venv-torch beside it."""
    real_find_spec = testpaths.importlib.util.find_spec
    monkeypatch.setattr(testpaths.importlib.util, "find_spec", lambda name: None if name == "torch"
                        else real_find_spec(name))
    monkeypatch.setattr(frameworks, "ROOT", str(tmp_path))
    assert testpaths.setup_problem() == (f"{tmp_path}/.venv-torch/bin/python: missing: the pytorch environment is "
                                         f"not set up (bash scripts/setup_env.sh); the Jittor tests take their "
                                         f"PyTorch references from it")


def test_this_machine_has_what_the_tests_need():
    assert testpaths.setup_problem() is None
