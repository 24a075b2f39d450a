"""Where tests find the reference material (`../shared` beside the repository, as in CI) and the repository's
scripts, and what they read back from the files those scripts write."""
import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys

from lora_nlg.util.jsonl import read_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("LORA_NLG_SHARED", ROOT.parent / "shared"))
MIRROR = pathlib.Path(os.environ.get("LORA_NLG_MIRROR", SHARED / "nlg_data"))
VOCAB = MIRROR / "vocab"  # GPT-2's encoder.json + vocab.bpe
SCORER_FIXTURES = SHARED / "scorer_fixtures"


def load_script(relative):
    """A script of the repository (`relative` to ROOT, e.g. "data/prepare.py"; not a package module), loaded from
    its path as a module, to call its functions in-process."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(relative, *args):
    """A script of the repository (`relative` to ROOT) run with this python from ROOT, with `args` (each passed
    through str); the CompletedProcess, stdout and stderr captured as text."""
    return subprocess.run([sys.executable, str(ROOT / relative), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def read_records(path):
    """The objects of a jsonl file, in order."""
    return [item for _, item in read_jsonl(path)]


def sha256s(folder):
    """File name -> sha256 hex digest of every file directly in `folder`."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}
