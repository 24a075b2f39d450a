"""A rerun of the real pipeline keeps nothing stale or damaged (project issue, rows 4 and 5).

The SQuAD cpu demo on a given random base, PyTorch, micro settings (2 training steps of short rows, 3 test
questions, 4 answer tokens; a full run ~10 s): one unbroken run, then faults fed to it, each rerun checked
against the unbroken results byte for byte. Which stages run again does not depend on the framework."""
import json
import os
import pathlib
import random
import subprocess
import sys
import time

import pytest

from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.model.config import get_card
from lora_nlg.model.init_weights import init_gpt2_weights
from testpaths import MIRROR

ROOT = pathlib.Path(__file__).resolve().parents[2]
LORA = ("train (pytorch)", "beam (pytorch)", "decode (pytorch)", "score (pytorch)")
# what a run computes (the run folder's files that must not depend on how often the run was interrupted)
RESULTS = ("test_3_inputs/test.jsonl", "test_3_inputs/test_formatted.jsonl", "pytorch/model.2.safetensors",
           "pytorch/model.2.json", *(f"pytorch/{folder}{name}" for folder in ("", "zero_shot/") for name in (
               "predict.b1p1.jsonl", "squad_ref.json", "squad_pred.json", "scores/all.json", "scores.json")))


class Pipeline:
    """scripts/pipeline.py on one run folder (and its own data folder), sharing the base and validation set."""

    def __init__(self, folder, base, valid):
        self.run, self.data = folder / "run", folder / "data"
        self.argv = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "squad", "--preset", "cpu",
                     "--framework", "pytorch", "--source", str(MIRROR), "--out", str(self.run),
                     "--data_root", str(self.data), "--init_checkpoint", str(base), "--test_inputs", "3",
                     "--extra", f"train=--max_step 2 --log_interval 1 --valid_data {valid} --seq_len 64 "
                                f"--train_batch_size 2",
                     "--extra", "beam=--eval_len 4"]
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def __call__(self, *extra):
        result = subprocess.run(self.argv + list(extra), capture_output=True, text=True, env=self.env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert result.stderr == ""
        return result.stdout

    def start(self, stdout):
        return subprocess.Popen(self.argv, stdout=stdout, stderr=subprocess.STDOUT, text=True, env=self.env,
                                start_new_session=True)

    def results(self):
        return {name: (self.run / name).read_bytes() for name in RESULTS}

    def path(self, name):
        return self.run / name


def ran(stdout):
    """The stages a pipeline run ran, in order."""
    return [line.split("] ", 1)[1].split(": running (log ")[0] for line in stdout.splitlines()
            if line.startswith("[pipeline] ") and ": running (log " in line]


def files(*folders):
    """Every file under the folders: (bytes, mtime_ns)."""
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for folder in folders
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    """One finished run (`.pipeline`), its results, and how long it took."""
    folder = tmp_path_factory.mktemp("faults")
    card = get_card("gpt2.tiny")
    write_hf_gpt2(folder / "base", init_gpt2_weights(card, seed=1), card)
    valid = folder / "valid.jsonl"  # a tiny validation set keeps the evaluations instant
    valid.write_text(json.dumps({"context": [464, 3290, EOS_ID], "completion": [318, 257, EOS_ID]}) + "\n")
    pipeline = Pipeline(folder / "unbroken", folder / "base", valid)
    clock = time.perf_counter()
    stdout = pipeline()
    seconds = time.perf_counter() - clock
    assert len(ran(stdout)) == 9
    return type("Unbroken", (), {"pipeline": pipeline, "results": pipeline.results(), "seconds": seconds,
                                 "base": folder / "base", "valid": valid, "folder": folder})


def test_an_unchanged_rerun_skips_every_stage_and_changes_no_file(unbroken):
    pipeline = unbroken.pipeline
    before = files(pipeline.run, pipeline.data, unbroken.base)
    stdout = pipeline()
    assert ran(stdout) == [] and stdout.count("done earlier, skipped") == 9
    assert files(pipeline.run, pipeline.data, unbroken.base) == before


def test_a_truncated_prediction_file_reruns_decode_and_score_but_not_training(unbroken):
    pipeline = unbroken.pipeline
    predictions = pipeline.path("pytorch/squad_pred.json")
    predictions.write_bytes(predictions.read_bytes()[:20])
    stdout = pipeline()
    assert ran(stdout) == ["decode (pytorch)", "score (pytorch)"]
    assert f"[pipeline] stage decode (pytorch): output {predictions} is damaged (invalid JSON (" in stdout
    assert pipeline.results() == unbroken.results


def test_a_deleted_checkpoint_is_trained_again_and_everything_after_it_runs_again(unbroken):
    pipeline = unbroken.pipeline
    checkpoint, scores = pipeline.path("pytorch/model.2.safetensors"), pipeline.path("pytorch/scores.json")
    scored = scores.stat().st_mtime_ns
    checkpoint.unlink()
    stdout = pipeline()
    assert ran(stdout) == list(LORA)
    assert f"[pipeline] stage train (pytorch): output {checkpoint} is missing; running it again" in stdout
    assert "[pipeline] stage score (pytorch): its upstream stage decode (pytorch) ran again; running it again" \
        in stdout
    assert scores.stat().st_mtime_ns != scored and pipeline.results() == unbroken.results  # new, and the same


def test_a_corrupt_checkpoint_is_trained_again_instead_of_failing_beam(unbroken):
    """Its size and mtime unchanged (as bit rot would leave them): loading it is what finds the damage."""
    pipeline = unbroken.pipeline
    checkpoint = pipeline.path("pytorch/model.2.safetensors")
    info = checkpoint.stat()
    with open(checkpoint, "r+b") as f:
        f.write(b"\xff" * 16)
    os.utime(checkpoint, ns=(info.st_atime_ns, info.st_mtime_ns))
    dry = subprocess.run(pipeline.argv + ["--dry_run"], capture_output=True, text=True, env=pipeline.env)
    assert f"[pipeline] train (pytorch): to run again, output {checkpoint} is damaged (unreadable safetensors" \
        in dry.stdout and "[pipeline] score (pytorch): to run again, its upstream stage decode" in dry.stdout
    stdout = pipeline()
    assert ran(stdout) == list(LORA)
    assert f"[pipeline] stage train (pytorch): output {checkpoint} is damaged (unreadable safetensors file" in stdout
    assert pipeline.results() == unbroken.results


def test_kill_9_at_random_moments_then_a_rerun_gives_the_unbroken_results_and_no_partial_file(unbroken):
    """Three tries, each killed a seeded random delay (0-1.5 s) after its 1st-3rd stage started, so the kills land
    in different stages (a command, an in-process step, a marker being written)."""
    pipeline = Pipeline(unbroken.folder / "killed", unbroken.base, unbroken.valid)
    rng = random.Random(20240611)
    plan = [(rng.randint(1, 3), rng.uniform(0, 1.5)) for _ in range(3)]
    killed = []
    for attempt, (stage, delay) in enumerate(plan):
        process = pipeline.start(subprocess.PIPE)
        with open(unbroken.folder / f"killed_attempt{attempt}.log", "w") as log:
            started = 0
            for line in process.stdout:
                log.write(line)
                started += ": running (log " in line
                if started == stage:
                    time.sleep(delay)
                    if process.poll() is None:
                        process.kill()  # SIGKILL, to the pipeline only: its command must die with it
                        killed.append(line.split("] ", 1)[1].split(": running")[0])
                    break
            process.stdout.close()
        process.wait()
        wait_for_no_process_in(process.pid)
    assert killed, f"no try was killed ({plan})"
    pipeline()
    assert pipeline.results() == unbroken.results, f"killed in {killed} ({plan})"
    assert [str(p) for p in (*pipeline.run.rglob("*.partial"), *pipeline.data.rglob("*.partial*"))] == []


def wait_for_no_process_in(session, timeout=10):
    """Wait until no live (non-zombie) process of the session is left: a killed pipeline leaves no orphan."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":  # fields[3]: the session id
                left.append(stat.parent.name)
        if not left:
            return
        assert time.monotonic() < deadline, f"processes {left} outlived the killed pipeline"
        time.sleep(0.05)
