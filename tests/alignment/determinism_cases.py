"""Same command, same numbers: two fresh processes running the same gpt2_ft.py command write bit-identical
losses and checkpoint files. Collected by both trees' test_determinism.py.

gpt2.tiny on token ids drawn from a small range, so every batch repeats ids: the embedding gradient
then sums several rows into one, which is where PyTorch's CPU backward of `weight[ids]` differed between
runs (threads adding in a varying order); F.embedding's backward sums in a fixed order.
"""
import subprocess

import pytest

from alignment.train_runs import events, write_dataset
from lora_nlg.pipeline.frameworks import framework_cwd, framework_python

COMMANDS = {
    "full fine-tuning": ["--lora_dim", "0", "--lora_dropout", "0"],
    "LoRA with dropout": ["--lora_dim", "4", "--lora_dropout", "0.1", "--lora_targets", "q,v"],
}


@pytest.fixture(scope="module")
def repeating_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return (write_dataset(folder / "train.jsonl", 64, 0, vocab_size=300),
            write_dataset(folder / "valid.jsonl", 8, 1, vocab_size=300))


def run_twice(framework, data, tmp_path, extra):
    folders = []
    for name in ("first", "second"):
        work_dir = tmp_path / name
        argv = ["--train_data", str(data[0]), "--valid_data", str(data[1]), "--work_dir", str(work_dir),
                "--model_card", "gpt2.tiny", "--train_batch_size", "8", "--seq_len", "32", "--max_step", "40",
                "--lr", "0.001", "--warmup_step", "5", "--log_interval", "1", "--eval_interval", "20",
                "--save_interval", "20", "--random_seed", "110", "--device", "cpu", *extra]
        result = subprocess.run([framework_python(framework), "src/gpt2_ft.py", *argv], cwd=framework_cwd(framework),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        folders.append(work_dir)
    return folders


def check_same_command_same_numbers(framework, data, tmp_path, command):
    first, second = run_twice(framework, data, tmp_path, COMMANDS[command])
    assert "reproducibility: bit-reproducible (CPU)" in (first / "log.txt").read_text().splitlines()
    assert events(first, "start")[0]["reproducibility"] == "bit-reproducible (CPU)"
    losses = [[e["loss"] for e in events(folder, "train")] for folder in (first, second)]
    assert len(losses[0]) == 40 and len(set(losses[0])) > 1
    assert losses[0] == losses[1]
    assert [e["valid_loss"] for e in events(first, "eval")] == [e["valid_loss"] for e in events(second, "eval")]
    for name in ("model.20.safetensors", "model.40.safetensors", "model.best.safetensors", "train_state.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
