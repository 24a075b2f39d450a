"""Kill gpt2_ft.py with SIGKILL at random moments, resume it each time, and compare with an unbroken run.

    PYTHONPATH=tests python tests/alignment/kill_resume.py FRAMEWORK TRAIN VALID OUT_DIR KILLS

Runs in either venv and imports no framework itself (the Jittor runtime ends a process whose child
dies of SIGKILL, so the killing happens here, not in pytest). Each child trains the micro card for
MAX_STEP steps, saving every step; a kill lands at a random moment after the child's first logged
step. Prints one JSON line: kills landed, and whether losses, validation losses and adapters equal the
unbroken run's, and which `*.partial` files are left.
"""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from alignment.train_runs import SEED, events, micro_argv
from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.pipeline.frameworks import framework_cwd, framework_python
from lora_nlg.train.state import STATE_FILE

MAX_STEP = 150
COMMON = ["--max_step", str(MAX_STEP), "--max_epoch", "100", "--grad_acc", "2", "--lora_dropout", "0.1",
          "--log_interval", "1", "--eval_interval", "7", "--save_interval", "1"]
RUNNER = ("import sys\nfrom alignment.train_runs import MICRO\nfrom lora_nlg.model import config\n"
          "config.CARDS['gpt2.micro'] = MICRO\nimport gpt2_ft\ngpt2_ft.main(gpt2_ft.TrainEngine, sys.argv[1:])\n")


def start(framework, data, work_dir, resume):
    argv = micro_argv(data, work_dir, *COMMON, *(["--resume"] if resume else []))
    return subprocess.Popen([framework_python(framework), "-c", RUNNER, *argv], cwd=framework_cwd(framework),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def logged_steps(work_dir):
    path = os.path.join(work_dir, "log.jsonl")
    return os.path.getsize(path) if os.path.exists(path) else 0


def broken_run(framework, data, work_dir, kills, rng):
    """Kill the run `kills` times at random moments of its training, resuming after each; then let it finish."""
    landed = 0
    while True:
        child = start(framework, data, work_dir, os.path.exists(os.path.join(work_dir, STATE_FILE)))
        if landed == kills:
            _, err = child.communicate(timeout=600)
            assert child.returncode == 0, err[-3000:]
            return landed
        size = logged_steps(work_dir)
        while child.poll() is None and logged_steps(work_dir) == size:  # wait until this child trains
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        if child.poll() is not None:  # finished before the kill: done, with fewer kills than asked
            assert child.returncode == 0, child.stderr.read()[-3000:]
            return landed
        child.send_signal(signal.SIGKILL)
        child.wait()
        landed += 1


def same_adapters(a_dir, b_dir, stem):
    a, b = load_adapter(os.path.join(a_dir, stem)), load_adapter(os.path.join(b_dir, stem))
    return a.step == b.step and all(np.array_equal(a.tensors[n], b.tensors[n]) for n in a.tensors)


def main(framework, train, valid, out, kills):
    data = (train, valid)
    straight, broken = os.path.join(out, "straight"), os.path.join(out, "broken")
    child = start(framework, data, straight, resume=False)
    _, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-3000:]
    landed = broken_run(framework, data, broken, int(kills), random.Random(SEED))
    train_a, train_b = events(straight, "train"), events(broken, "train")
    print(json.dumps({
        "kills": landed, "max_step": MAX_STEP, "steps": [e["step"] for e in train_b],
        "losses_equal": [e["loss"] for e in train_a] == [e["loss"] for e in train_b],
        "valid_losses_equal": [e["valid_loss"] for e in events(straight, "eval")]
        == [e["valid_loss"] for e in events(broken, "eval")],
        "adapters_equal": same_adapters(straight, broken, f"model.{MAX_STEP}") and same_adapters(straight, broken,
                                                                                                 "model.best"),
        "partial_files": sorted(glob.glob(os.path.join(broken, "**", "*.partial"), recursive=True)),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
