"""scripts/generate.py: one answer from a base GPT-2 in each framework's environment, and its errors."""
import pathlib
import subprocess
import sys

import pytest

from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.data.fetch import install_vocab
from lora_nlg.model.config import get_card
from lora_nlg.model.init_weights import init_gpt2_weights
from testpaths import MIRROR

ROOT = pathlib.Path(__file__).resolve().parents[2]
PARAGRAPH = "LoRA freezes the pretrained weights and trains small low-rank matrices beside them."
QUESTION = "What does LoRA freeze?"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random gpt2.tiny in the HF layout, and the GPT-2 vocabulary."""
    folder = tmp_path_factory.mktemp("generate")
    write_hf_gpt2(folder / "base", init_gpt2_weights(get_card("gpt2.tiny"), seed=3), get_card("gpt2.tiny"))
    install_vocab(folder / "vocab", str(MIRROR), folder / "cache")
    return folder


def generate(base, *flags):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "generate.py"), "--init_checkpoint",
                           str(base / "base"), "--vocab", str(base / "vocab"), "--model_card", "gpt2.tiny",
                           "--context", PARAGRAPH, "--question", QUESTION, "--eval_len", "6", *flags],
                          capture_output=True, text=True)


def test_both_frameworks_give_the_same_greedy_answer_in_the_seeds_layout(base):
    answers = []
    for framework in ("pytorch", "jittor"):
        result = generate(base, "--framework", framework)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[:2] == [f"Context: {PARAGRAPH}", f"Question: {QUESTION}"] and lines[2].startswith("Answer:")
        answers.append(lines[2])
    assert len(answers[0]) > len("Answer:") and answers[0] == answers[1]  # random weights: some tokens, no newline


def test_relative_paths_are_read_from_the_callers_folder(base):
    """gpt2_beam.py runs in NLG_<framework>/: a path relative to where generate.py was started must still work."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate.py"), "--init_checkpoint", "base",
                             "--vocab", "vocab", "--model_card", "gpt2.tiny", "--context", PARAGRAPH,
                             "--question", QUESTION, "--eval_len", "2"], capture_output=True, text=True, cwd=base)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].startswith("Answer:")


def test_a_missing_checkpoint_is_one_line(base, tmp_path):
    result = generate(base, "--init_checkpoint", str(tmp_path / "nothing"))
    assert result.returncode != 0 and "gpt2_beam.py (pytorch) failed:" in result.stderr
    assert str(tmp_path / "nothing") in result.stderr and "Traceback" not in result.stderr
