"""Several processes against one, under each framework's own launcher (torchrun / mpirun): gpt2.tiny LoRA on the
E2E sample (data/prepare.py's files).

    PYTHONPATH=tests python tests/alignment/ranks_cases.py CASE FRAMEWORK ARGS...  (prints one JSON line)

    train FRAMEWORK TRAIN VALID OUT      1 process x batch 8 (OUT/one) vs 2 x batch 4 (OUT/two), dropout 0
    beam FRAMEWORK ADAPTER TEST OUT [N]  the adapter decoded by 1 process (OUT/one) and by 2 (OUT/two), or by N only
    kill FRAMEWORK TRAIN VALID OUT       kill one of 2 ranks mid-run, resume with 2; vs an unbroken 2-rank run
    diverge FRAMEWORK TRAIN VALID OUT    a loss that goes non-finite: how every rank ends

Imports no framework (runs in either venv; the Jittor runtime ends a process whose child dies of SIGKILL, so
the killing happens here, not in pytest). What "equal to one process" means: lora_nlg.util.ranks.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from alignment.train_runs import SEED, events
from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.pipeline.frameworks import framework_cwd, framework_script, launch_command
from lora_nlg.train.state import STATE_FILE
from testpaths import script_env

CARD = "gpt2.tiny"
# the SQuAD project's adapter (attn+mlp, r=8), lr 2e-3 after 5 warm-up steps (as test_alignment_train.py)
COMMON = ["--model_card", CARD, "--valid_batch_size", "8", "--seq_len", "64", "--lr", "0.002", "--warmup_step", "5",
          "--random_seed", str(SEED), "--lora_targets", "attn,mlp", "--lora_dim", "8", "--lora_alpha", "16"]
TRAIN = ["--max_step", "30", "--log_interval", "1", "--eval_interval", "10", "--save_interval", "15"]
BEAM = ["--batch_size", "3", "--seq_len", "64", "--eval_len", "16", "--beam", "4", "--length_penalty", "0.8",
        "--no_repeat_ngram_size", "4", "--eos_token_id", "628"]
KILLED = ["--max_step", "60", "--grad_acc", "2", "--lora_dropout", "0.1", "--log_interval", "1",
          "--eval_interval", "7", "--save_interval", "1", "--train_batch_size", "4"]
SCRIPTS = {"ft": "gpt2_ft.py", "beam": "gpt2_beam.py"}


def train_argv(data, work_dir, *extra):
    return ["--train_data", data[0], "--valid_data", data[1], "--work_dir", work_dir, *COMMON, *extra]


def start(framework, nproc, command, argv):
    """The launcher running the tree's gpt2_ft.py / gpt2_beam.py (`command` ft / beam) in nproc processes, one
    thread each, in a session of its own (so its ranks can be found)."""
    script = framework_script(framework, SCRIPTS[command])
    return subprocess.Popen(launch_command(framework, script, nproc, list(map(str, argv))),
                            cwd=framework_cwd(framework), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)


def finish(process, timeout=600):
    output, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise SystemExit(f"{process.args}: exit {process.returncode}\n{output[-3000:]}")
    return output


def worst_relative(a, b):
    return max(float(np.abs(a[n] - b[n]).max() / max(np.abs(a[n]).max(), 1e-12)) for n in a)


def compare_runs(a_dir, b_dir, stem):
    a, b = load_adapter(os.path.join(a_dir, stem)), load_adapter(os.path.join(b_dir, stem))
    losses = [[e["loss"] for e in events(d, "train")] for d in (a_dir, b_dir)]
    valid = [[e["valid_loss"] for e in events(d, "eval")] for d in (a_dir, b_dir)]
    return {"steps": [len(x) for x in losses],
            "loss_abs": max(abs(x - y) for x, y in zip(*losses)),
            "valid_loss_abs": max(abs(x - y) for x, y in zip(*valid)),
            "lora_rel": worst_relative(a.tensors, b.tensors), "same_names": sorted(a.tensors) == sorted(b.tensors),
            "losses_identical": losses[0] == losses[1], "valid_identical": valid[0] == valid[1],
            "adapters_identical": all(np.array_equal(a.tensors[n], b.tensors[n]) for n in a.tensors)}


def case_train(framework, train, valid, out):
    data, one, two = (train, valid), os.path.join(out, "one"), os.path.join(out, "two")
    finish(start(framework, 1, "ft", train_argv(data, one, *TRAIN, "--lora_dropout", "0", "--train_batch_size", "8")))
    output = finish(start(framework, 2, "ft", train_argv(data, two, *TRAIN, "--lora_dropout", "0",
                                                         "--train_batch_size", "4")))
    log = pathlib.Path(two, "log.txt").read_text()
    return {**compare_runs(one, two, "model.30"),
            "start_events": len(events(two, "start")), "processes_line": "processes: 2" in log,
            "end_lines": log.count("End of training"), "printed_end": output.count("End of training"),
            "global_batch": events(two, "start")[0]["global_batch"]}


def case_beam(framework, adapter, test, out, only=None):
    files = []
    for nproc, name in [(n, name) for n, name in ((1, "one"), (2, "two")) if only in (None, str(n))]:
        argv = ["--data", test, "--random_seed", str(SEED), "--lora_checkpoint", adapter, *BEAM,
                "--work_dir", os.path.join(out, name), "--output_file", "predict.jsonl"]
        finish(start(framework, nproc, "beam", argv))
        files.append(pathlib.Path(out, name, "predict.jsonl").read_bytes())
    return {"identical": len(set(files)) == 1, "lines": files[0].count(b"\n"),
            "prediction": str(pathlib.Path(out, name, "predict.jsonl"))}


def workers(launcher_pid):
    """The pids of the launcher's children that run gpt2_ft.py: its ranks (torchrun and mpirun start them
    directly; Jittor's own helper processes are their children)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = pathlib.Path("/proc", entry, "stat").read_text()
            command = pathlib.Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == launcher_pid and any(c.endswith(b"gpt2_ft.py") for c in command):
            found.append(int(entry))
    return sorted(found)


def alive(pid):
    try:
        status = pathlib.Path("/proc", str(pid), "status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def logged(work_dir):
    """Train events in a run's log so far."""
    path = os.path.join(work_dir, "log.jsonl")
    return len(events(work_dir, "train")) if os.path.exists(path) else 0


def case_kill(framework, train, valid, out):
    data, straight, broken = (train, valid), os.path.join(out, "straight"), os.path.join(out, "broken")
    finish(start(framework, 2, "ft", train_argv(data, straight, *KILLED)))
    launcher = start(framework, 2, "ft", train_argv(data, broken, *KILLED))
    while launcher.poll() is None and logged(broken) < 20:
        time.sleep(0.05)
    ranks = workers(launcher.pid)
    if len(ranks) != 2:
        raise SystemExit(f"found {len(ranks)} ranks of {launcher.args}")
    killed_at = time.monotonic()
    os.kill(ranks[-1], signal.SIGKILL)
    output, _ = launcher.communicate(timeout=120)
    ended = time.monotonic() - killed_at
    left = [pid for pid in ranks if alive(pid)]
    step_killed = logged(broken)
    finish(start(framework, 2, "ft", train_argv(data, broken, *KILLED, "--resume")))
    return {**compare_runs(straight, broken, "model.60"), "launcher_exit": launcher.returncode,
            "seconds_to_exit": ended, "ranks_left": left, "killed_after_steps": step_killed,
            "state": os.path.exists(os.path.join(broken, STATE_FILE))}


def case_diverge(framework, train, valid, out):
    work_dir = os.path.join(out, "diverged")
    argv = train_argv((train, valid), work_dir, *TRAIN, "--lr", "1e6", "--lora_dropout", "0")
    launcher = start(framework, 2, "ft", argv)
    output, _ = launcher.communicate(timeout=300)
    errors = [line for line in output.splitlines() if line.startswith("error: training diverged")]
    return {"exit": launcher.returncode, "errors": errors,
            "diverged_events": len(events(work_dir, "diverged"))}


CASES = {"train": case_train, "beam": case_beam, "kill": case_kill, "diverge": case_diverge}


def e2e_sample(out, mirror):
    """(train, valid head, test head) of the E2E sample as data/prepare.py writes it from `mirror`: the first 16
    validation rows and the first 200 test rows (26 unique inputs)."""
    root = pathlib.Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, str(root / "data" / "prepare.py"), "--dataset", "e2e", "--source", str(mirror),
                    "--out", str(out / "data"), "--vocab-dir", str(out / "vocab")], check=True, capture_output=True)
    heads = []
    for split, rows in (("valid", 16), ("test", 200)):
        lines = (out / "data" / f"{split}.jsonl").read_text().splitlines(keepends=True)[:rows]
        heads.append(out / f"{split}_head.jsonl")
        heads[-1].write_text("".join(lines))
    return str(out / "data" / "train.jsonl"), *map(str, heads)


def run_case(case, framework, *args):
    """A case run as a subprocess of this python (a test process never parents the launchers itself)."""
    done = subprocess.run([sys.executable, __file__, case, framework, *map(str, args)], capture_output=True,
                          text=True, timeout=900, env=script_env())
    assert done.returncode == 0, f"{case} {framework}: exit {done.returncode}\n{done.stdout[-2000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return json.loads(done.stdout.splitlines()[-1])

if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]](*sys.argv[2:])))
