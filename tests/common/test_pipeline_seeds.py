"""scripts/pipeline.py --seeds (project issue "Same command, same numbers", item 2) and --best_epoch.

One micro pipeline (the SQuAD cpu demo on a given random base, 2 training steps of 2 rows, 3 test questions,
4 answer tokens; ~40 s once Jittor's kernels are compiled) with 2 seeds in both frameworks: every seed's
scores, a summary with mean and std of every metric, adapters that differ between seeds; a rerun skips every
stage, a third seed runs only its own stages. The statistics, the plans and the best-epoch choice are checked
without running anything."""
import json
import os
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pytest

from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.model.config import get_card
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.pipeline import seeds
from lora_nlg.pipeline.stages import StageTime
from lora_nlg.util.jsonl import write_jsonl
from testpaths import MIRROR, load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]
pipeline = load_script("scripts/pipeline.py")
FRAMEWORKS = ("pytorch", "jittor")
SEEDS = (110, 111)
STAGES = ("train", "beam", "decode", "score")


def ran(stdout):
    """The stages a pipeline run ran, in order."""
    return [line.split("] ", 1)[1].split(": running (log ")[0] for line in stdout.splitlines()
            if line.startswith("[pipeline] ") and ": running (log " in line]


class Micro:
    """scripts/pipeline.py on the SQuAD cpu demo at micro sizes, in one folder with its base and validation row."""

    def __init__(self, folder, run="run"):
        self.folder = folder
        self.run, self.data, self.base, self.valid = (folder / name for name in (run, "data", "base", "valid.jsonl"))
        if not self.base.exists():
            card = get_card("gpt2.tiny")
            write_hf_gpt2(self.base, init_gpt2_weights(card, seed=1), card)
            self.valid.write_text(json.dumps({"context": [464, 3290, EOS_ID], "completion": [318, 257, EOS_ID]}) + "\n")

    def argv(self, *extra, train=""):
        return [sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "squad", "--preset", "cpu",
                "--source", str(MIRROR), "--out", str(self.run), "--data_root", str(self.data),
                "--img_dir", str(self.folder / "img"), "--init_checkpoint", str(self.base), "--test_inputs", "3",
                "--extra", f"train=--max_step 2 --log_interval 1 --valid_data {self.valid} --train_batch_size 2 "
                           f"{train}",
                "--extra", "beam=--eval_len 4", *extra]

    def __call__(self, *extra, train=""):
        result = subprocess.run(self.argv(*extra, train=train), capture_output=True, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})  # micro shapes: threads only wait
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Two seeds, both frameworks, run once: (the pipeline, its stdout)."""
    micro = Micro(tmp_path_factory.mktemp("seeds"))
    stdout = micro("--seeds", ",".join(map(str, SEEDS)))
    return micro, stdout


def test_every_seed_is_trained_decoded_and_scored_and_the_base_once(seeded):
    micro, stdout = seeded
    expected = ["prepare", "test subset"]
    for framework in FRAMEWORKS:
        expected += [f"zero-shot {step} ({framework})" for step in ("beam", "decode", "score")]
        expected += [f"{step} ({framework}, seed {seed})" for seed in SEEDS for step in STAGES]
    expected += [f"compare frameworks (seed {seed})" for seed in SEEDS]
    assert ran(stdout) == expected
    for framework in FRAMEWORKS:
        assert sorted(p.name for p in (micro.run / framework).iterdir() if p.name.startswith("seed_")) == \
            [f"seed_{seed}" for seed in SEEDS]
        assert not (micro.run / framework / "log.jsonl").exists()  # nothing in the single-seed layout
        for seed in SEEDS:
            folder = micro.run / framework / f"seed_{seed}"
            scores = json.loads((folder / "scores.json").read_text())
            assert set(scores) == {"exact_match", "f1"}
            start = json.loads((folder / "log.jsonl").read_text().splitlines()[0])
            assert start["type"] == "start" and start["args"]["random_seed"] == seed
        assert json.loads((micro.run / framework / "zero_shot" / "scores.json").read_text())
    for seed in SEEDS:
        assert (micro.run / f"alignment_seed{seed}.md").read_text().strip()
        assert (micro.folder / "img" / f"squad_cpu_seed{seed}_alignment.png").is_file()


def test_the_seeds_adapters_differ(seeded):
    micro, _ = seeded
    for framework in FRAMEWORKS:
        first, second = (load_adapter(str(micro.run / framework / f"seed_{seed}" / "model.2.safetensors"))
                         for seed in SEEDS)
        assert set(first.tensors) == set(second.tensors)
        differ = [name for name in first.tensors if not np.array_equal(first.tensors[name], second.tensors[name])]
        assert differ, f"{framework}: seeds {SEEDS} trained identical adapters"


def test_summary_has_mean_and_std_of_every_metric(seeded):
    micro, stdout = seeded
    summary = json.loads((micro.run / "summary.json").read_text())
    assert summary["seeds"] == list(SEEDS) and summary["std"] == "sample standard deviation (n-1) over the seeds"
    rows = {(row["framework"], row["model"]): row for row in summary["rows"]}
    assert list(rows) == [(fw, model) for fw in FRAMEWORKS for model in ("base, zero-shot", "LoRA")]
    for framework in FRAMEWORKS:
        lora, base = rows[framework, "LoRA"], rows[framework, "base, zero-shot"]
        per_seed = {item["seed"]: item["scores"] for item in lora["per_seed"]}
        assert lora["n"] == 2 and lora["seeds"] == list(SEEDS) and set(per_seed) == set(SEEDS)
        for metric in per_seed[SEEDS[0]]:
            values = [per_seed[seed][metric] for seed in SEEDS]
            assert lora["mean"][metric] == pytest.approx(statistics.fmean(values))
            assert lora["std"][metric] == pytest.approx(statistics.stdev(values))
        for seed in SEEDS:
            assert per_seed[seed] == json.loads((micro.run / framework / f"seed_{seed}" / "scores.json").read_text())
            assert {item["seed"]: item["checkpoint"] for item in lora["per_seed"]}[seed] == \
                f"{framework}/seed_{seed}/model.2.safetensors"
        assert base["n"] == 1 and base["seeds"] is None and set(base["std"].values()) == {None}
    compared = [(item["model"], item["metric"]) for item in summary["framework_difference"]]
    assert compared == [(model, metric) for model in ("base, zero-shot", "LoRA") for metric in ("exact_match", "f1")]
    text = (micro.run / "summary.md").read_text()
    assert "| framework | model | exact_match | f1 |" in text
    assert all(f"| {fw} | LoRA | " in text and " (n=2) |" in text for fw in FRAMEWORKS)
    assert all(f"- {metric}: frameworks differ by " in text for metric in ("exact_match", "f1"))
    assert text.count(f"| LoRA | {SEEDS[1]} | ") == 2  # each seed's row, per framework
    assert "| train (jittor, seed 111) |" in text and text in stdout


def test_a_rerun_skips_every_seed_and_a_new_seed_runs_alone(seeded):
    micro, _ = seeded
    summary = (micro.run / "summary.md").read_bytes()
    stdout = micro("--seeds", ",".join(map(str, SEEDS)))
    assert ran(stdout) == [] and (micro.run / "summary.md").read_bytes() == summary
    dry = micro("--seeds", ",".join(map(str, (*SEEDS, 112))), "--dry_run")
    to_run = [line.split("] ", 1)[1].split(": to run")[0] for line in dry.splitlines()
              if line.startswith("[pipeline] ") and ": to run" in line]
    assert to_run == [f"{step} ({fw}, seed 112)" for fw in FRAMEWORKS for step in STAGES] + \
        ["compare frameworks (seed 112)"]


def test_best_epoch_beam_searches_the_epoch_end_with_the_lowest_validation_loss(seeded):
    """PyTorch, 3 epochs of 2 batches on 4 training rows: the stage reads the 3 epoch-end evaluations from
    log.jsonl and the beam search gets the checkpoint of the lowest. (A run folder of its own, beside the seeds';
    their data, base and validation row.)"""
    micro = Micro(seeded[0].folder, run="best_epoch")
    train = micro.folder / "train.jsonl"
    write_jsonl(train, [{"context": [464 + i, 3290, EOS_ID], "completion": [318, 257, EOS_ID]} for i in range(4)])
    stdout = micro("--framework", "pytorch", "--best_epoch", train=f"--train_data {train} --max_step 6 --max_epoch 3")
    assert ran(stdout)[0] != "prepare"  # the seeds' data
    assert ran(stdout)[-5:] == ["train (pytorch)", "best epoch (pytorch)", *(f"{s} (pytorch)" for s in STAGES[1:])]
    events = [json.loads(line) for line in (micro.run / "pytorch" / "log.jsonl").read_text().splitlines()]
    losses = {event["step"]: event["valid_loss"] for event in events if event["type"] == "eval"}
    assert sorted(losses) == [2, 4, 6]
    best = min(losses, key=lambda step: (losses[step], step))
    checkpoint = str(micro.run / "pytorch" / f"model.{best}.safetensors")
    marker = json.loads((micro.run / "pytorch" / "stages" / "best_epoch.done.json").read_text())
    assert marker["results"]["checkpoint"] == checkpoint and marker["results"]["step"] == best
    assert f"--lora_checkpoint {checkpoint} " in (micro.run / "pytorch" / "stages" / "beam.log").read_text()


# ---------------------------------------------------------------- plans and statistics (nothing runs)

def parse(tmp_path, *argv):
    return pipeline.parse_args(["--out", str(tmp_path / "run"), "--data_root", str(tmp_path / "data"),
                                "--img_dir", str(tmp_path / "img"), *argv])


def plan(tmp_path, *argv):
    return {stage.name: stage for stage in pipeline.plan(parse(tmp_path, *argv)).stages}


def flag(stage, name):
    argv = [str(item) for item in stage.steps[0].argv]
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]


def test_seeds_change_only_the_training_seed_and_the_folders(tmp_path):
    single = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--base_dir", str(tmp_path / "b"))
    several = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--base_dir", str(tmp_path / "b"),
                   "--seeds", "111,112")
    shared = ["prepare", "corpus", "pretrain base (jittor)", "export base",
              *(f"zero-shot {step} ({fw})" for fw in FRAMEWORKS for step in ("beam", "decode", "score"))]
    for name in shared:  # the same data, base and zero-shot evaluation as without --seeds: done once for both
        assert several[name].key == single[name].key
    assert [name for name in several if name not in shared] == [
        *(f"{step} ({fw}, seed {seed})" for fw in FRAMEWORKS for seed in (111, 112) for step in STAGES),
        "compare frameworks (seed 111)", "compare frameworks (seed 112)"]
    for framework in FRAMEWORKS:
        for seed in (111, 112):
            train, beam = several[f"train ({framework}, seed {seed})"], several[f"beam ({framework}, seed {seed})"]
            work_dir = str(tmp_path / "run" / framework / f"seed_{seed}")
            assert (flag(train, "--random_seed"), flag(train, "--work_dir")) == (str(seed), work_dir)
            assert flag(beam, "--lora_checkpoint") == f"{{train ({framework}, seed {seed}): checkpoint}}"
            assert flag(beam, "--work_dir") == work_dir
            strip = [str(a) for a in train.steps[0].argv]
            reference = [str(a) for a in single[f"train ({framework})"].steps[0].argv]
            assert [a for a in strip if a not in (str(seed), work_dir)] == \
                [a for a in reference if a not in ("110", str(tmp_path / "run" / framework))]
    compare = several["compare frameworks (seed 112)"]
    assert compare.upstream == [several["score (pytorch, seed 112)"], several["score (jittor, seed 112)"]]
    assert flag(compare, "--out") == str(tmp_path / "img" / "e2e_cpu_seed112_alignment.png")


def test_best_epoch_puts_its_choice_between_training_and_beam(tmp_path):
    stages = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--framework", "jittor", "--init_checkpoint",
                  str(tmp_path), "--seeds", "5", "--best_epoch")
    best = stages["best epoch (jittor, seed 5)"]
    assert best.upstream == [stages["train (jittor, seed 5)"]]
    assert flag(stages["beam (jittor, seed 5)"], "--lora_checkpoint") == "{best epoch (jittor, seed 5): checkpoint}"
    assert stages["beam (jittor, seed 5)"].upstream[0] is best


@pytest.mark.parametrize("value, message", [
    ("110,x", "give seeds as integers separated by commas"), ("110,,111", "give seeds as integers"),
    ("110,111,110", "seed 110 given twice"), ("-1", "seeds must be >= 0"),
])
def test_bad_seeds_are_usage_errors(value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pipeline.parse_args(["--dataset", "e2e", "--seeds", value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_extra_training_seed_conflicts_with_seeds(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "e2e", "--preset",
                             "cpu", "--out", str(tmp_path), "--dry_run", "--seeds", "1,2",
                             "--extra", "train=--random_seed 7"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: --extra train: sets --random_seed 7, but with --seeds each run's seed is the " \
                            "one --seeds gives it\n"


def row(framework, model, seed, **scores):
    return {"framework": framework, "model": model, "seed": seed, "folder": "f", "checkpoint": None,
            "scores": scores}


def test_mean_sample_std_and_the_framework_difference_against_the_pooled_spread():
    rows = [row("pytorch", "base, zero-shot", None, BLEU=10.0, NIST=1.0),
            *(row("pytorch", "LoRA", seed, BLEU=b, NIST=n) for seed, b, n in ((1, 60.0, 8.0), (2, 62.0, 8.0),
                                                                              (3, 64.0, 8.0))),
            row("jittor", "base, zero-shot", None, BLEU=10.5, NIST=1.0),
            *(row("jittor", "LoRA", seed, BLEU=b, NIST=n) for seed, b, n in ((1, 61.0, 8.5), (2, 63.0, 8.5),
                                                                             (3, 65.0, 8.5)))]
    result = seeds.summarize(rows, [1, 2, 3])
    lora = result["rows"][1]
    assert (lora["n"], lora["mean"], lora["std"]) == (3, {"BLEU": 62.0, "NIST": 8.0}, {"BLEU": 2.0, "NIST": 0.0})
    assert result["rows"][0]["std"] == {"BLEU": None, "NIST": None}
    diff = {(d["model"], d["metric"]): d for d in result["framework_difference"]}
    assert diff["LoRA", "BLEU"] == {"model": "LoRA", "metric": "BLEU", "pytorch": 62.0, "jittor": 63.0,
                                    "difference": 1.0, "pooled_std": 2.0, "within_spread": True}
    assert diff["LoRA", "NIST"]["within_spread"] is False and diff["base, zero-shot", "BLEU"]["pooled_std"] is None
    text = "\n".join(seeds.markdown(result))
    assert "| pytorch | LoRA | 62.0000 ± 2.0000 (n=3) | 8.0000 ± 0.0000 (n=3) |" in text
    assert "| jittor | base, zero-shot | 10.5000 | 1.0000 |" in text
    assert "- BLEU: frameworks differ by 1.0000, seeds vary by 2.0000 (std): within the spread" in text
    assert "- NIST: frameworks differ by 0.5000, seeds vary by 0.0000 (std): beyond the spread" in text
    assert "base, zero-shot: frameworks differ by BLEU 0.5000, NIST 0.0000 (decoded once, no seed spread)" in text
    assert "LoRA: frameworks against the seed-to-seed spread (|mean pytorch - mean jittor| against the pooled" in text
    assert "| jittor | LoRA | 2 | n/a | 63.0000 | 8.5000 |" in text
    assert seeds.pooled_std([(3, 1.0), (2, None)]) == pytest.approx((2 / 3) ** 0.5)
    assert seeds.pooled_std([(1, None), (1, None)]) is None


def test_best_epoch_is_read_from_the_epoch_end_evaluations(tmp_path):
    """Evaluations between epoch ends (eval_interval) do not count; the last step does; equal losses: the first."""
    events = [{"type": "start", "batches_per_epoch": 4, "step": 0},
              *({"type": "eval", "step": step, "valid_loss": loss} for step, loss in ((2, 0.5), (4, 2.0), (8, 1.5),
                                                                                       (10, 1.5))),
              *({"type": "save", "kind": "checkpoint", "step": step, "path": f"model.{step}"} for step in (4, 8, 10)),
              {"type": "end", "step": 10}]
    write_jsonl(tmp_path / "log.jsonl", events)
    chosen = pipeline.best_epoch_checkpoint(str(tmp_path))
    assert (chosen["checkpoint"], chosen["step"], chosen["epoch_ends"]) == ("model.8", 8, 3)


def test_a_summary_of_other_seeds_is_rewritten_even_when_every_stage_is_skipped(tmp_path, monkeypatch):
    """Every stage skipped keeps summary.md only while it describes these results: not after --seeds changed, nor
    when a run without --seeds follows a --seeds one (its summary.json then goes too)."""
    monkeypatch.setattr(sys, "argv", ["pipeline.py"])
    skipped = [StageTime("prepare", None)]

    def summarize(*argv):
        args = parse(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--framework", "pytorch",
                     "--init_checkpoint", str(tmp_path), *argv)
        planned = pipeline.plan(args)
        for number, evaluation in enumerate(planned.evaluations):
            score = evaluation.score
            pathlib.Path(score.path("done.json")).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(score.path("done.json")).write_text(json.dumps({"key": score.key, "outputs": []}))
            pathlib.Path(score.outputs.scores).write_text(json.dumps({"BLEU": number / 10}))
        return pipeline.summary(args, planned, skipped, 1.0)

    summary, summary_json = tmp_path / "run" / "summary.md", tmp_path / "run" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text("old")
    first = summarize("--seeds", "1,2")
    assert summary.read_text() == first and json.loads(summary_json.read_text())["seeds"] == [1, 2]
    assert "| pytorch | LoRA | 0.1500 ± 0.0707 (n=2) |" in first
    assert summarize("--seeds", "1,2") == first and summary.read_text() == first  # the same results: kept
    wider = summarize("--seeds", "1,2,3")
    assert summary.read_text() == wider and json.loads(summary_json.read_text())["seeds"] == [1, 2, 3]
    single = summarize()
    assert summary.read_text() == single and "| pytorch | LoRA | 0.1000 |" in single and not summary_json.exists()
