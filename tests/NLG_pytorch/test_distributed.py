"""Two PyTorch processes (torchrun, gloo) compute what one computes (shared tests: tests/alignment/ranks_tests.py)."""
import os
import subprocess

from alignment.ranks_tests import *  # noqa: F401,F403  (the shared tests and fixtures, collected here for this tree)
from alignment.train_runs import events
from lora_nlg.pipeline.frameworks import framework_cwd, framework_python


def test_microsoft_loras_launch_command_works(e2e, tmp_path):
    """`python -m torch.distributed.launch --nproc_per_node=2` passes --local-rank=N to each process."""
    work_dir = tmp_path / "launched"
    done = subprocess.run([framework_python("pytorch"), "-m", "torch.distributed.launch", "--nproc_per_node=2",
                           "src/gpt2_ft.py", "--train_data", e2e[0], "--valid_data", e2e[1], "--work_dir",
                           str(work_dir), "--model_card", "gpt2.tiny", "--seq_len", "64", "--train_batch_size", "4",
                           "--max_step", "3", "--log_interval", "1"], cwd=framework_cwd("pytorch"),
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processes: 2 (torchrun); global batch 8" in (work_dir / "log.txt").read_text()
    assert [e["step"] for e in events(work_dir, "train")] == [1, 2, 3]
