import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "NLG_pytorch" / "src"))

from alignment.train_runs import MICRO, write_dataset  # noqa: E402  (needs tests/ on sys.path: tests/conftest.py)
from lora_nlg.model import config  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls run far faster on one thread than on two cores shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def micro_card(monkeypatch):
    """tests/alignment/train_runs.MICRO registered as the card `gpt2.micro`: a training step takes milliseconds."""
    monkeypatch.setitem(config.CARDS, "gpt2.micro", MICRO)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(train, valid) encoded files of random token ids for the micro card."""
    folder = tmp_path_factory.mktemp("data")
    return write_dataset(folder / "train.jsonl", 16, 0), write_dataset(folder / "valid.jsonl", 6, 1)
