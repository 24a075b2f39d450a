"""Every dataset's pipeline in both frameworks, then one summary of all of them.

    bash scripts/run_all.sh [--preset cpu] [--source DIR] [--only e2e,webnlg,...] [other scripts/pipeline.py flags]

Runs scripts/pipeline.py for E2E, WebNLG, DART and SQuAD, then E2E again with the `qv` and `full` variants (the
paper's q,v adapter and full fine-tuning beside the preset's adapter), each printing its stages' times, in
<out_root>/<dataset>[_<variant>]/; then writes <out_root>/summary.md (lora_nlg/pipeline/overview.py): every dataset x
framework x model with its main metrics, trainable parameters and training time, and each run's time (its stages'
times as their done-markers recorded them, and this call's wall time). Finished stages are skipped, so a rerun
continues where one stopped, and the recorded times still add up to the whole run's. Other flags go to every
pipeline run unchanged.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import pipeline
from lora_nlg.pipeline import overview, presets
from lora_nlg.pipeline.stages import format_seconds
from lora_nlg.train.logs import read_log
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.files import atomic_open

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = (*presets.DATASETS, presets.run_name("e2e", "qv"), presets.run_name("e2e", "full"))  # also the run folders
OWN_FLAGS = ("--dataset", "--variant", "--out", "--seeds", "--dry_run")  # run_all sets or cannot combine them


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # (--out must not pass for --out_root)
    parser.add_argument("--preset", default="cpu", choices=list(presets.PRESETS), help="default cpu")
    parser.add_argument("--out_root", help="where the runs and summary.md go (default trained_models/<setup>)")
    parser.add_argument("--only", type=run_list, default=RUNS, metavar="RUN,...",
                        help=f"these runs, in this order (default all: {','.join(RUNS)})")
    args, passed = parser.parse_known_args(argv)
    for flag in passed:
        if flag.split("=")[0] in OWN_FLAGS:
            parser.error(f"{flag.split('=')[0]}: run_all sets it for each run (or cannot run with it)")
    args.passed = passed
    args.out_root = os.path.abspath(args.out_root or os.path.join(ROOT, "trained_models",
                                                                  presets.PRESETS[args.preset].setup))
    return args


def run_list(text):
    runs = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in runs if name not in RUNS]
    if unknown or not runs:
        raise argparse.ArgumentTypeError(f"{unknown[0] if unknown else text!r}: choose from {', '.join(RUNS)}")
    return runs


def run_argv(args, run):
    """scripts/pipeline.py's flags for one run (`e2e`, `e2e_qv`, ...), and its dataset."""
    dataset, variant = presets.split_run_name(run)
    argv = ["--dataset", dataset, "--variant", variant, "--preset", args.preset,
            "--out", os.path.join(args.out_root, run), *args.passed]
    return argv, dataset, variant


def finished_run(argv):
    """(summary rows, {done-marker: seconds} of every stage) of one finished run, from its stages' markers and
    files: a row per evaluated model."""
    planned = pipeline.plan(pipeline.parse_args(argv))
    seconds_of = {}
    for stage in planned.stages:
        marker = stage.finished()
        if marker is None:
            raise NLGError(f"{stage.path('done.json')}: stage {stage.name!r} has not finished with these settings")
        seconds_of[stage.path("done.json")] = marker["seconds"]
    rows = []
    for evaluation in planned.evaluations:
        model = evaluation.model
        with open(evaluation.score.outputs.scores, encoding="utf-8") as f:
            scores = json.load(f)
        trainable = seconds = None
        if not model.zero_shot:
            train = next(stage for stage in model.upstream if stage.slug == "train")
            seconds = train.finished()["seconds"]
            start = next(event for event in read_log(os.path.join(train.folder, "log.jsonl"))
                         if event["type"] == "start")
            trainable = start["trainable_params"]
        rows.append({"framework": model.framework, "model": model.label, "trainable": trainable,
                     "train_seconds": seconds, "scores": scores})
    return rows, seconds_of


def main(argv=None):
    given = sys.argv[1:] if argv is None else argv
    args = parse_args(given)
    script = os.path.join(ROOT, "scripts", "pipeline.py")
    clock = time.perf_counter()
    run_times, sections, counted = [], {}, {}
    for run in args.only:
        run_flags, dataset, variant = run_argv(args, run)
        name = dataset if variant == "lora" else f"{dataset} ({presets.VARIANTS[variant].label})"
        print(f"[run_all] {name}: {shlex.join(['python', 'scripts/pipeline.py', *run_flags])}", flush=True)
        started = time.perf_counter()
        if subprocess.run([sys.executable, script, *run_flags]).returncode != 0:
            raise NLGError(f"the {name} run failed (its error is above); rerunning run_all continues from there")
        wall = time.perf_counter() - started
        print(f"[run_all] {name}: finished in {format_seconds(wall)}", flush=True)
        rows, seconds_of = finished_run(run_flags)
        sections.setdefault(dataset, []).extend(rows)
        own = {path: seconds for path, seconds in seconds_of.items() if path not in counted}  # (the base: once)
        counted.update(own)
        run_times.append((name, sum(own.values()), wall))
    preset = presets.PRESETS[args.preset]
    text = overview.markdown(f"All datasets, preset {args.preset}: {preset.note}",
                             shlex.join(["bash", "scripts/run_all.sh", *given]), sections, run_times,
                             time.perf_counter() - clock)
    summary = os.path.join(args.out_root, "summary.md")
    os.makedirs(args.out_root, exist_ok=True)
    with atomic_open(summary) as f:
        f.write(text)
    print(text)
    print(f"[run_all] wrote {summary}")


if __name__ == "__main__":
    run_cli(main)
