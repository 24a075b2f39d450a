"""Fixtures the framework-free tests share: the GPT-2 tokenizer of the reference mirror, and the check that a
reader's error on a bad file is one line naming that file."""
import pytest

from lora_nlg.data.tokenizer import GPT2Tokenizer
from lora_nlg.util.errors import NLGError
from testpaths import VOCAB


@pytest.fixture(scope="session")
def tokenizer():
    """GPT2Tokenizer on the mirror's vocab (encoder.json + vocab.bpe)."""
    return GPT2Tokenizer(str(VOCAB))


@pytest.fixture
def file_error(tmp_path):
    """file_error(read, name, content, problem): with `content` written to tmp_path/name, read(path) must raise
    an NLGError whose message starts "<path>: " followed by `problem` (a regular expression)."""
    def check(read, name, content, problem):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(NLGError, match=f"^{path}: {problem}"):
            read(str(path))
    return check
