import pytest
import torch

from alignment.train_runs import MICRO, write_dataset
from lora_nlg.model import config


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
