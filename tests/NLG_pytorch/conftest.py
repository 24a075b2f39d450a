import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "NLG_pytorch" / "src"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls run far faster on one thread than on two cores shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
