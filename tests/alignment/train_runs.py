"""Framework-free helpers for tests that run gpt2_ft.py: synthetic data, a micro card, argv, log events.

Only numpy and lora_nlg here, so the Jittor tests (which must never import torch) use them too; either tree's
gpt2_ft.py runs as a subprocess of its own venv (`start_ft`).
"""
import math
import os
import pathlib
import subprocess

import numpy as np

from lora_nlg.data.batching import eval_batches, load_encoded
from lora_nlg.model.config import GPT2Config
from lora_nlg.pipeline.frameworks import framework_cwd, framework_python
from lora_nlg.train import logs
from lora_nlg.util.jsonl import write_jsonl

MICRO = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=512, n_positions=64)  # a step takes milliseconds
SEED = 110


def write_dataset(path, n, seed, vocab_size=512):
    """n encoded examples of random token ids (contexts of 4-15 tokens, completions of 3-9)."""
    rng = np.random.default_rng(seed)
    write_jsonl(path, [{"context": rng.integers(1, vocab_size, rng.integers(4, 16)).tolist(),
                        "completion": rng.integers(1, vocab_size, rng.integers(3, 10)).tolist()}
                       for _ in range(n)])
    return path


def micro_argv(data, work_dir, *extra, card="gpt2.micro"):
    """gpt2_ft.py flags for a quick run on (train, valid) `data`: batch 4, seq_len 32, lr 0.01, warm-up 2."""
    return ["--train_data", str(data[0]), "--valid_data", str(data[1]), "--work_dir", str(work_dir),
            "--model_card", card, "--train_batch_size", "4", "--valid_batch_size", "4", "--seq_len", "32",
            "--warmup_step", "2", "--lr", "0.01", "--random_seed", str(SEED), *extra]


def events(work_dir, kind, name="log.jsonl"):
    """The `kind` events ("train", "eval", ...) of a run's log, read as one unbroken run."""
    return [e for e in logs.read_log(pathlib.Path(work_dir) / name) if e["type"] == kind]


def reference_train_line(e):
    """microsoft/LoRA gpt2_ft.py's train line (with the space before '| ms/batch' of its current version),
    restated here as a %-template, independently of lora_nlg.train.logs; ppl is recomputed from avg loss."""
    template = "| epoch %3d step %8d | %6d batches | lr %.3g | ms/batch %5.2f | loss %5.2f | avg loss %5.2f | ppl %5.2f"
    return template % (e["epoch"], e["step"], e["batch"], e["lr"], e["ms_per_batch"], e["loss"], e["avg_loss"],
                       math.exp(e["avg_loss"]))


def reference_eval_line(e):
    template = "| Eval %3d at step %8d | time: %5.2fs | valid loss %5.2f | valid ppl %5.2f | best ppl %5.2f "
    return template % (e["eval"], e["step"], e["time_s"], e["valid_loss"], e["valid_ppl"], e["best_ppl"])


def start_ft(framework, argv):
    """Start a tree's gpt2_ft.py as a subprocess (cwd NLG_<framework>, as its docs run it); its output is in the
    work dir's logs. PyTorch gets one thread: tests run it beside other work (Jittor, a second run) on few cores,
    where more threads only contend."""
    threads = {"OMP_NUM_THREADS": "1"} if framework == "pytorch" else {}
    return subprocess.Popen([framework_python(framework), "src/gpt2_ft.py", *map(str, argv)],
                            cwd=framework_cwd(framework), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **threads})


def finish(process, timeout=600):
    """Wait for a started run; a failure shows its stderr."""
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"{process.args}: exit {process.returncode}\n{stderr[-3000:]}"


def logits_batch(valid_path, rows, seq_len):
    """The batch both frameworks compute logits on: the first `rows` examples of a validation file."""
    return next(eval_batches(load_encoded(valid_path), rows, seq_len))
