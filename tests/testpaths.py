"""Where tests find the reference material and the repository's scripts, and what they read back from the files
those scripts write.

The reference material is the data mirror (the datasets and GPT-2's vocabulary, laid out like microsoft/LoRA's
examples/NLG): `../shared/nlg_data` beside the clone when it is there (LORA_NLG_SHARED names another folder), else
the test cache `~/.cache/lora_nlg/nlg_data` (LORA_NLG_CACHE), which the first test session fills through the
project's downloader (official sources, or the mirror at LORA_NLG_DOWNLOAD_URL). The scorer fixtures are
committed: tests/fixtures/scorers."""
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

from lora_nlg.data import fetch
from lora_nlg.metrics.java import INSTALL_JAVA
from lora_nlg.pipeline.frameworks import framework_python
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import read_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("LORA_NLG_SHARED", ROOT.parent / "shared"))
CACHE = pathlib.Path(os.environ.get("LORA_NLG_CACHE", pathlib.Path.home() / ".cache" / "lora_nlg"))
DOWNLOADED = CACHE / "nlg_data"
MIRROR = pathlib.Path(os.environ.get("LORA_NLG_MIRROR")
                      or (SHARED / "nlg_data" if (SHARED / "nlg_data").is_dir() else DOWNLOADED))
VOCAB = MIRROR / "vocab"  # GPT-2's encoder.json + vocab.bpe
SCORER_FIXTURES = ROOT / "tests" / "fixtures" / "scorers"

# The files the tests read: every split with a recorded sum, the two offline stand-ins and the vocabulary.
REFERENCE_FILES = (*fetch.VOCAB, *(raw for splits in fetch.RAW_SPLITS.values() for raw in splits.values()
                                   if raw.sha256), fetch.SQUAD_TRAIN_REBUILT, fetch.DART_TRAIN_POOL)


def squad_train_file():
    """The SQuAD train file of the mirror, relative to it: the official one where present (as data/prepare.py
    chooses), else the rebuild."""
    official = fetch.RAW_SPLITS["squad"]["train"].path
    return official if (MIRROR / official).is_file() else fetch.SQUAD_TRAIN_REBUILT.path


def reference_data_problem():
    """None when the reference files are in MIRROR (downloading what the test cache lacks), else one line saying
    what is missing and how to get it."""
    if MIRROR != DOWNLOADED:
        missing = [raw.path for raw in REFERENCE_FILES if not (MIRROR / raw.path).is_file()]
        return (f"{MIRROR / missing[0]}: missing from the reference mirror (and {len(missing) - 1} more)"
                if missing else None)
    offline_only = fetch.SQUAD_TRAIN_REBUILT.url is None and not os.environ.get(fetch.DOWNLOAD_URL_ENV)
    try:
        for raw in REFERENCE_FILES:
            fetch.download(fetch.RAW_SPLITS["squad"]["train"] if offline_only and raw == fetch.SQUAD_TRAIN_REBUILT
                           else raw, str(DOWNLOADED))
    except NLGError as err:
        return (f"{err} (the tests need the data mirror: ../shared/nlg_data beside the clone, LORA_NLG_SHARED, or "
                f"a download into {DOWNLOADED})")
    return None


def setup_problem():
    """None, or one line naming what the test command needs and this machine lacks (Java for METEOR, .venv-torch
    for the Jittor tree's alignment tests, the reference data)."""
    if shutil.which("java") is None:
        return f"java: not found on PATH; the METEOR and PTB-tokenizer tests need it: {INSTALL_JAVA}"
    if importlib.util.find_spec("torch") is None:  # the Jittor venv
        try:
            framework_python("pytorch")
        except NLGError as err:
            return f"{err}; the Jittor tests take their PyTorch references from it"
    return reference_data_problem()


def script_env(**extra):
    """The environment of a test helper run as a process of its own (tests/alignment/*.py): tests/ importable, as
    pytest.ini's `pythonpath` makes it for the tests themselves; `extra` variables set too."""
    paths = [str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


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
