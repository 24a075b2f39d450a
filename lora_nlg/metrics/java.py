"""The Java runtime and the jars behind METEOR 1.5 and the Stanford PTB tokenizer.

pycocoevalcap (PyPI) ships `meteor-1.5.jar` with its English paraphrase table and
`stanford-corenlp-3.4.1.jar`, byte-identical to the jars e2e-metrics and GenerationEval use, so no
separate download is needed. Anything missing is an NLGError saying what to install.
"""
import os
import shutil

from lora_nlg.util.errors import NLGError

INSTALL_JAVA = "install a Java runtime, e.g. `apt-get install default-jre-headless`"
INSTALL_JARS = "install them with `pip install pycocoevalcap==1.2`"


def java_executable():
    path = shutil.which("java")
    if path is None:
        raise NLGError(f"java: not found on PATH; METEOR and the PTB tokenizer need it: {INSTALL_JAVA}")
    return path


def pycocoevalcap_dir():
    try:
        import pycocoevalcap
    except ImportError:
        raise NLGError(f"pycocoevalcap: not installed; it ships the METEOR and PTB jars: {INSTALL_JARS}") from None
    return list(pycocoevalcap.__path__)[0]  # a namespace package: no __file__


def _existing(*parts):
    path = os.path.join(pycocoevalcap_dir(), *parts)
    if not os.path.isfile(path):
        raise NLGError(f"{path}: missing; reinstall with `pip install --force-reinstall pycocoevalcap==1.2`")
    return path


def meteor_jar():
    """The METEOR 1.5 jar; it finds `data/paraphrase-en.gz` next to itself."""
    _existing("meteor", "data", "paraphrase-en.gz")
    return _existing("meteor", "meteor-1.5.jar")


def ptb_tokenizer_jar():
    return _existing("tokenizer", "stanford-corenlp-3.4.1.jar")
