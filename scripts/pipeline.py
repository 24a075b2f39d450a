"""One pipeline for E2E, WebNLG, DART and SQuAD: prepare -> train -> beam -> decode -> score, in each framework.

    bash scripts/run_e2e.sh [--framework pytorch|jittor|both] [--preset paper|sampled|cpu] [--source DIR]
                            [--init_checkpoint PATH]           (run_webnlg.sh, run_dart.sh, run_squad.sh alike)
    = python scripts/pipeline.py --dataset e2e ...              (--dry_run lists the stages and commands)

Stages, each skipped when it finished before with the same settings, its outputs pass their checks (lines,
JSON, checkpoints load) and its inputs are those it consumed; otherwise it runs again, and so does everything
after it (lora_nlg/pipeline/stages.py; a failure stops the pipeline and names the stage's log):
  prepare              data/prepare.py -> data/<dataset>/<full|sampled_18pct>/
  corpus, pretrain,    cpu preset only: the demo's base, gpt2.tiny trained on keywords -> sentence records of
  export               SQuAD-train paragraphs only, by the Jittor tree (--base_framework) ->
                       pretrained_checkpoints/cpu_demo_base/ (HF layout; built once, shared by all four demos)
  per framework, in trained_models/<setup>/<dataset>/<framework>/ (gpt2_ft.py's work_dir):
  zero-shot *          cpu preset only: beam, decode and score of the base alone -> zero_shot/scores.json
  train                gpt2_ft.py: log.txt, log.jsonl, model.<step>.safetensors/.json
  beam                 gpt2_beam.py with the final checkpoint on the test set -> predict.<b10p08r4>.jsonl
  decode               gpt2_decode.py -> the scorers' reference / prediction files
  score                eval/measure_scores.py (E2E), eval/generation_eval.py (WebNLG all / seen /
                       unseen, DART) or eval/squad_eval.py (SQuAD EM / F1) -> scores.json
  compare              with both frameworks: scripts/compare_logs.py -> img/<dataset>_<preset>_alignment.png
                       and trained_models/<setup>/<dataset>/alignment.md
Settings are lora_nlg/pipeline/presets.py's; `--extra STAGE=FLAGS` appends flags to a stage's command
(later flags win), e.g. `--extra "train=--max_step 20" --test_inputs 10` for a quick run.

Several seeds (scores as mean ± std over training seeds): `--seeds 110,111,112` trains and decodes one adapter per
seed and framework, gpt2_ft.py --random_seed S, in trained_models/<setup>/<dataset>/<framework>/seed_S/ (stages
`train (<framework>, seed S)` ...; with both frameworks one `compare frameworks (seed S)` each). Only the training
seed changes: data preparation, the test subset and the cpu base stay those of the default seed (110), so every
seed trains on the same data from the same base, and the zero-shot base is decoded once. summary.md and
summary.json then give per framework and model mean ± sample standard deviation (n-1) over the seeds, each
seed's scores, and per metric the framework difference |mean pytorch - mean jittor| against the seeds' pooled
standard deviation. A finished seed is skipped on a rerun; adding a seed runs only the new one. Without --seeds,
one run of the default seed in <framework>/ (the single-seed layout; its folder is not one of seed_S/).
`--variant qv|full`: another adapter on the same data and base (the paper's q,v r=4, or full fine-tuning), in
<run>_<variant>/, without the zero-shot stages (the lora run scores the base); scripts/run_all.py runs both for E2E.
`--best_epoch`: beam-search the epoch-end checkpoint with the lowest validation loss (stage `best epoch`, read
from log.jsonl) instead of the final one; chosen on the validation set, so the test set picks nothing.
"""
import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights
from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.data.batching import load_encoded, unique_contexts
from lora_nlg.data.sampling import evenly_spaced
from lora_nlg.decode import beam_cli
from lora_nlg.decode.to_text import group_inputs, select, subset_path
from lora_nlg.model.config import GPT2Config
from lora_nlg.pipeline import presets, seeds
from lora_nlg.pipeline.frameworks import (
    framework_cwd,
    framework_python,
    framework_script,
    launch_command,
)
from lora_nlg.pipeline.stages import (
    Call,
    Command,
    Damaged,
    Ref,
    Stage,
    StageFailed,
    checking,
    clean_leftovers,
    count_lines,
    expect_lines,
    format_seconds,
    named_outputs,
    plan_status,
    read_json_output,
    read_text_output,
    resolve,
    run_stages,
    say,
)
from lora_nlg.train import cli as train_cli
from lora_nlg.train.logs import read_log
from lora_nlg.train.state import STATE_FILE
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.files import atomic_open, sha256_file, write_json
from lora_nlg.util.jsonl import read_jsonl, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXTRA_STAGES = ("corpus", "pretrain", "train", "beam")
# the test files that prepare and the test subset both write; beam and decode read them by these names
TEST_FILES = {"test": "test.jsonl", "test_formatted": "test_formatted.jsonl"}


class Paths:
    """Where everything of one pipeline run lives."""

    def __init__(self, args):
        preset = args.preset_spec
        self.data_root = os.path.abspath(args.data_root)
        self.data = os.path.join(self.data_root, args.dataset, presets.data_variant(preset.fraction_of(args.dataset)))
        self.vocab = os.path.join(self.data_root, "vocab")
        self.run = os.path.abspath(args.out or os.path.join(ROOT, "trained_models", preset.setup,
                                                            presets.run_name(args.dataset, args.variant)))
        self.corpus = os.path.join(self.data_root, "cpu_demo_base")
        self.pretrain = os.path.join(os.path.dirname(self.run), "base")  # the cpu base, shared by its datasets
        self.base_dir = os.path.abspath(args.base_dir)
        self.img = os.path.abspath(args.img_dir)

    def framework(self, name):
        return os.path.join(self.run, name)


@dataclass(frozen=True)
class ModelUnderTest:
    """One model that gets beam -> decode -> score, as the planner knows it: its stages' names, commands and the
    summary's row come from here, never from folder names."""
    framework: str
    folder: str  # its predictions, scorer files and scores.json (the LoRA model's: gpt2_ft.py's work_dir)
    init: str  # the base checkpoint
    adapter: Ref | None  # the trained checkpoint (LoRA, or full weights); None: the base alone, zero-shot
    tests: Stage  # the stage whose outputs .test / .test_formatted it is evaluated on (prepare or test subset)
    upstream: tuple  # the stages its beam search waits for
    seed: int | None = None  # --seeds: the training seed of its adapter (None: the single-seed run, or zero-shot)
    variant: str = "lora"  # presets.VARIANTS: what was trained

    @property
    def zero_shot(self):
        return self.adapter is None

    @property
    def label(self):
        """The summary's `model` column."""
        return "base, zero-shot" if self.zero_shot else presets.VARIANTS[self.variant].label

    def stage_name(self, step):
        return f"{'zero-shot ' if self.zero_shot else ''}{tagged(step, self.framework, self.seed)}"


def tagged(step, framework, seed=None):
    """A stage's name: `train (pytorch)`, or with --seeds `train (pytorch, seed 111)`."""
    return f"{step} ({framework})" if seed is None else f"{step} ({framework}, seed {seed})"


def seed_folder(folder, seed):
    """A framework's work dir for one seed: its own folder without --seeds, else <folder>/seed_<seed>/."""
    return folder if seed is None else os.path.join(folder, f"seed_{seed}")


class Evaluation(NamedTuple):
    """The beam, decode and score stages of one model (each has the model as its role)."""
    model: ModelUnderTest
    beam: Stage
    decode: Stage
    score: Stage

    @property
    def stages(self):
        return [self.beam, self.decode, self.score]


@dataclass
class Plan:
    """Every stage of a run in order, and the evaluations among them (the summary's rows, in that order)."""
    paths: Paths
    stages: list
    evaluations: list


def files_in(folder, **names):
    """Named outputs (output name -> file name) in `folder`."""
    return named_outputs(**{key: os.path.join(folder, name) for key, name in names.items()})


def check_flags(stage, parse, argv):
    """Parse a stage's flags now, so that a bad --extra flag stops the run before anything runs."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parse(argv)
    except SystemExit:
        raise NLGError(f"--extra {stage}: {captured.getvalue().strip().splitlines()[-1]}") from None


# ---------------------------------------------------------------- checks of finished stages' outputs
# Each raises Damaged(path, why); a stage whose outputs fail runs again (lora_nlg.pipeline.stages).

def verify_data(outputs, _results):
    """prepare / corpus: manifest.json lists every data file with its sha256 (and its rows): each has them."""
    manifest = read_json_output(outputs.manifest)
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        raise Damaged(outputs.manifest, "no 'files' object")
    for path in outputs:
        if path == outputs.manifest:
            continue
        name = os.path.basename(path)
        entry = listed.get(name)
        digest = entry.get("sha256") if isinstance(entry, dict) else entry
        if not isinstance(digest, str):
            raise Damaged(outputs.manifest, f"no sha256 of {name}")
        rows = listed_rows(manifest, name)
        if rows is not None:
            expect_lines(path, count_lines(path), rows, "rows in manifest.json")
        with checking(path):
            if sha256_file(path) != digest:
                raise Damaged(path, "its sha256 differs from the one in manifest.json")


def listed_rows(manifest, name):
    """The rows manifest.json gives for a data file: data/prepare.py's per split, prepare_corpus.py's per file."""
    entry = manifest["files"][name]
    if isinstance(entry, dict):
        return entry.get("examples")
    split = name.removesuffix(".jsonl").removesuffix("_formatted")
    return manifest.get("splits", {}).get(split, {}).get("references")


def verify_test_subset(outputs, results):
    """Both files hold the same rows (the number the stage wrote)."""
    counts = {path: count_lines(path) for path in outputs}
    expected = results.get("rows", counts[outputs.test_formatted])
    for path, count in counts.items():
        expect_lines(path, count, expected, "rows of the test subset")


def verify_checkpoint(outputs, _results):
    """Training: its final checkpoint loads (tensors checked against its own config)."""
    with checking(outputs.checkpoint):
        load_adapter(outputs.checkpoint)


def verify_base(outputs, _results):
    """The exported base: config.json gives a GPT-2 shape and model.safetensors holds every weight of it."""
    config = read_json_output(outputs.config)
    with checking(outputs.config):
        shape = GPT2Config(**{key: config[key] for key in ("n_embd", "n_layer", "n_head", "vocab_size",
                                                            "n_positions", "layer_norm_epsilon")})
    with checking(outputs.weights):
        load_gpt2_weights(outputs.weights, shape)


def verify_predictions(tests):
    """Beam search: one prediction per unique input of the test file, ids 0..n-1."""
    def verify(outputs, _results):
        with checking(tests.test):
            inputs = len(unique_contexts(load_encoded(tests.test))[0])
        path = outputs.predictions
        with checking(path):
            ids = [item["id"] for _, item in read_jsonl(path, required=("id", "predict"))]
        expect_lines(path, len(ids), inputs, f"unique inputs of {tests.test}")
        if sorted(ids) != list(range(inputs)):
            raise Damaged(path, f"its ids are not 0..{inputs - 1}")
    return verify


def verify_scorer_files(dataset, folder, tests):
    """Decode: each subset's prediction file has one prediction per input of its reference file, and those are the
    test file's unique inputs (SQuAD: its questions)."""
    spec = presets.DATASETS[dataset]

    def verify(_outputs, _results):
        with checking(tests.test_formatted):
            inputs, _ = group_inputs(tests.test_formatted)
            chosen = {subset: select(inputs, subset) for subset in spec.subsets}
        for subset in spec.subsets:
            ref, pred = scorer_files(dataset, folder, subset)
            count, what = len(chosen[subset]), "test inputs" if subset == "all" else f"{subset} test inputs"
            if spec.scorer == "squad":
                verify_squad_files(ref, pred, [row["id"] for item in chosen[subset] for _, row in item.rows])
            elif spec.scorer == "e2e":  # references one per line, a blank line between inputs
                groups = [group for group in read_text_output(ref).rstrip("\n").split("\n\n") if group]
                if len(groups) != count:
                    raise Damaged(ref, f"{len(groups)} groups of references for {count} {what}")
                expect_lines(pred, count_lines(pred), count, f"inputs of {ref}")
            else:  # reference0..N-1 parallel to the hypotheses, no final newline (GenerationEval splits on it)
                references = int(spec.decode[spec.decode.index("--ref_num") + 1])
                for k in range(references):
                    path = os.path.join(ref, f"reference{k}")
                    expect_lines(path, len(read_text_output(path).split("\n")), count, what)
                expect_lines(pred, len(read_text_output(pred).split("\n")), count, f"inputs of {ref}")
    return verify


def verify_squad_files(ref, pred, questions):
    dataset = read_json_output(ref)
    with checking(ref):
        ids = [qa["id"] for article in dataset["data"] for paragraph in article["paragraphs"]
               for qa in paragraph["qas"]]
    if sorted(ids) != sorted(questions):
        raise Damaged(ref, f"{len(ids)} questions for the {len(questions)} of the test file")
    answers = read_json_output(pred)
    if not isinstance(answers, dict) or set(answers) != set(ids):
        raise Damaged(pred, f"{len(answers) if isinstance(answers, dict) else 'no'} answers for the {len(ids)} "
                            f"questions of {ref}")


def verify_scores(parts):
    """Score: every scorer's file holds numbers, and scores.json is their merge."""
    def verify(outputs, _results):
        if json.dumps(merged_scores(parts)) != json.dumps(read_json_output(outputs.scores)):  # NaN == NaN here
            raise Damaged(outputs.scores, f"not the merge of {', '.join(parts.values())}")
    return verify


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def verify_comparison(outputs, _results):
    with checking(outputs.image):
        with open(outputs.image, "rb") as f:
            if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise Damaged(outputs.image, "not a PNG image")
    if not read_text_output(outputs.table).strip():
        raise Damaged(outputs.table, "empty")


# ---------------------------------------------------------------- stages

def prepare_stage(args, paths):
    argv = [sys.executable, os.path.join(ROOT, "data", "prepare.py"), "--dataset", args.dataset,
            "--fraction", f"{args.preset_spec.fraction_of(args.dataset):g}",
            "--seed", str(presets.PAPER_SEED), "--out", paths.data, "--vocab-dir", paths.vocab,
            *presets.as_flags(presets.prepare_settings(args.dataset, args.preset))]
    if args.source:
        argv += ["--source", args.source]
    outputs = files_in(paths.data, train="train.jsonl", valid="valid.jsonl", **TEST_FILES, manifest="manifest.json")
    return Stage("prepare", paths.data, "prepare", [Command(argv)], outputs=outputs, verify=verify_data)


def spread_inputs(source, count, folder, target):
    """Write the test rows of `count` unique inputs spread evenly over the test set `source` (so WebNLG keeps seen
    and unseen categories) to `target` in `folder`, formatted and encoded files still parallel."""
    def step(log):
        rows = [item for _, item in read_jsonl(source.test_formatted)]
        ids = [item for _, item in read_jsonl(source.test)]
        if len(rows) != len(ids):
            raise NLGError(f"{source.test}: {len(ids)} rows but {source.test_formatted} has {len(rows)}")
        chosen = set(evenly_spaced(list(dict.fromkeys(row["context"] for row in rows)), count))
        keep = [i for i, row in enumerate(rows) if row["context"] in chosen]
        write_jsonl(target.test_formatted, (rows[i] for i in keep))
        write_jsonl(target.test, (ids[i] for i in keep))
        log(f"test subset: {len(chosen)} inputs ({len(keep)} rows) spread over {source.test_formatted}")
        return {"rows": len(keep)}
    return Call(step, f"{count} test inputs spread over {source.test_formatted} -> {folder}")


def test_subset_stage(args, paths, prepare):
    folder = os.path.join(paths.run, f"test_{args.test_inputs}_inputs")
    outputs = files_in(folder, **TEST_FILES)
    step = spread_inputs(prepare.outputs, args.test_inputs, folder, outputs)
    return Stage("test subset", paths.run, "test_subset", [step], outputs=outputs, upstream=[prepare],
                 verify=verify_test_subset)


def final_checkpoint(work_dir):
    """The last checkpoint a finished gpt2_ft.py run saved (from its log.jsonl)."""
    log = os.path.join(work_dir, "log.jsonl")
    events = read_log(log)
    if not any(event["type"] == "end" for event in events):
        raise StageFailed(f"{log}: training did not reach its end")
    saves = [event["path"] for event in events if event["type"] == "save" and event.get("kind") == "checkpoint"]
    if not saves:
        raise StageFailed(f"{log}: no checkpoint was saved")
    return {"checkpoint": saves[-1]}


def best_epoch_checkpoint(work_dir):
    """The checkpoint a finished gpt2_ft.py run saved at the epoch end (or its last step) whose validation loss is
    the lowest (the earliest of equal ones), from its log.jsonl: gpt2_ft.py evaluates and saves at each."""
    log = os.path.join(work_dir, "log.jsonl")
    events = read_log(log)
    ends = [event for event in events if event["type"] == "end"]
    starts = [event for event in events if event["type"] == "start" and event.get("batches_per_epoch")]
    if not ends or not starts:
        raise StageFailed(f"{log}: training did not reach its end")
    per_epoch, last = starts[-1]["batches_per_epoch"], ends[-1]["step"]
    evals = [event for event in events if event["type"] == "eval"
             and (event["step"] % per_epoch == 0 or event["step"] == last)]
    if not evals:
        raise StageFailed(f"{log}: no validation loss at an epoch end (gpt2_ft.py --valid_data)")
    best = min(evals, key=lambda event: (float(event["valid_loss"]), event["step"]))
    saved = [event["path"] for event in events if event["type"] == "save" and event.get("kind") == "checkpoint"
             and event["step"] == best["step"]]
    if not saved:
        raise StageFailed(f"{log}: no checkpoint was saved at step {best['step']}, the best epoch end")
    return {"checkpoint": saved[-1], "step": best["step"], "epoch": best.get("epoch"),
            "valid_loss": float(best["valid_loss"]), "epoch_ends": len(evals)}


def best_epoch_stage(name, train, work_dir):
    """--best_epoch: choose among the checkpoints of `train` the epoch end with the lowest validation loss."""
    def step(log):
        chosen = best_epoch_checkpoint(work_dir)
        log(f"best of {chosen['epoch_ends']} epoch ends: step {chosen['step']} (epoch {chosen['epoch']}), "
            f"valid loss {chosen['valid_loss']:.4f}: {chosen['checkpoint']}")
        return chosen
    call = Call(step, f"the epoch-end checkpoint of {work_dir} with the lowest validation loss (log.jsonl)")
    stage = Stage(name, work_dir, "best_epoch", [call], upstream=[train], verify=verify_checkpoint)
    stage.outputs = named_outputs(checkpoint=Ref(stage, "checkpoint"))
    return stage


def per_process(settings, nproc):
    """The preset's training settings for `nproc` processes: the same global batch, --train_batch_size / nproc rows
    in each (gpt2_ft.py's flag counts the rows of one process, as microsoft/LoRA's)."""
    batch = settings["train_batch_size"]
    if batch % nproc:
        raise NLGError(f"--nproc {nproc}: the preset's batch of {batch} rows does not split into {nproc} equal parts")
    return {**settings, "train_batch_size": batch // nproc}


def train_stage(name, framework, data, work_dir, settings, init, extra, nproc, after=(), seeded=False):
    """gpt2_ft.py on the outputs .train / .valid of `data` (prepare, or the cpu base's corpus), after `data` and
    `after`, in `nproc` processes; `extra`: (the --extra stage, its flags). `seeded`: settings' random_seed is
    one of --seeds, which the extra flags must not change."""
    program = launch_command(framework, framework_script(framework, "gpt2_ft.py"), nproc)
    settings = per_process(settings, nproc)
    flags = ["--train_data", data.outputs.train, "--valid_data", data.outputs.valid, "--work_dir", work_dir,
             *presets.as_flags(settings)]
    if init is not None:
        flags += ["--init_checkpoint", init]
    extra_stage, extra_flags = extra
    parsed = check_flags(extra_stage, lambda a: train_cli.parse_args(a, framework), flags + extra_flags)
    if seeded and parsed.random_seed != settings["random_seed"]:
        raise NLGError(f"--extra {extra_stage}: sets --random_seed {parsed.random_seed}, but with --seeds each "
                       f"run's seed is the one --seeds gives it")
    command = Command([*program, *flags, *extra_flags], cwd=framework_cwd(framework),
                      resume=("--resume", os.path.join(work_dir, STATE_FILE)))
    stage = Stage(name, work_dir, "train", [command], upstream=[data, *after],
                  collect=lambda: final_checkpoint(work_dir), verify=verify_checkpoint)
    stage.outputs = named_outputs(checkpoint=Ref(stage, "checkpoint"))
    return stage


def export_stage(paths, pretrain):
    """The pretraining run's final (full-weights) checkpoint -> the HF-layout base folder."""
    def step(log):
        adapter = load_adapter(resolve(pretrain.outputs.checkpoint))
        write_hf_gpt2(paths.base_dir, adapter.tensors, adapter.config, paths.vocab)
        log(f"wrote {paths.base_dir}/model.safetensors, config.json and the tokenizer files ({adapter.card}, "
            f"step {adapter.step})")
        return {}
    outputs = files_in(paths.base_dir, weights="model.safetensors", config="config.json",
                       tokenizer="tokenizer.json")
    call = Call(step, f"export the final checkpoint of {paths.pretrain} to {paths.base_dir}")
    return Stage("export base", paths.pretrain, "export", [call], outputs=outputs, upstream=[pretrain],
                 verify=verify_base)


def cpu_base_stages(args, paths):
    """corpus -> pretrain (--base_framework's tree) -> export: the cpu demo's base model."""
    argv = [sys.executable, os.path.join(ROOT, "data", "prepare_corpus.py"), "--out", paths.corpus,
            "--vocab-dir", paths.vocab] + (["--source", args.source] if args.source else []) + args.extra["corpus"]
    outputs = files_in(paths.corpus, train="train.jsonl", valid="valid.jsonl", manifest="manifest.json")
    corpus = Stage("corpus", paths.corpus, "corpus", [Command(argv)], outputs=outputs, verify=verify_data)
    framework = args.base_framework  # the base is built once, by one tree, for both
    pretrain = train_stage(f"pretrain base ({framework})", framework, corpus, paths.pretrain, presets.CPU_PRETRAIN,
                           None, ("pretrain", args.extra["pretrain"]), args.nproc)
    return [corpus, pretrain, export_stage(paths, pretrain)]


def beam_stage(model, args):
    framework = model.framework
    program = launch_command(framework, framework_script(framework, "gpt2_beam.py"), args.nproc)
    flags = ["--data", model.tests.outputs.test, "--init_checkpoint", model.init]
    flags += ["--model_card", args.model_card] if model.zero_shot else ["--lora_checkpoint", model.adapter]
    flags += [*presets.as_flags(presets.beam_settings(args.dataset, args.preset)), *args.extra["beam"]]
    parsed = check_flags("beam", lambda a: beam_cli.parse_args(a, framework), [str(item) for item in flags])
    output = f"predict.{presets.beam_label(vars(parsed))}.jsonl"
    argv = [*program, *flags, "--work_dir", model.folder, "--output_file", output]
    return Stage(model.stage_name("beam"), model.folder, "beam", [Command(argv, cwd=framework_cwd(framework))],
                 outputs=named_outputs(predictions=os.path.join(model.folder, output)), upstream=list(model.upstream),
                 role=model, verify=verify_predictions(model.tests.outputs))


SCORER_FILES = {  # scorer -> the (reference, prediction) names decode writes; {} is the dataset
    "e2e": ("e2e_ref.txt", "e2e_pred.txt"),
    "generation": ("references_{}", "hypothesis_{}"),
    "squad": ("squad_ref.json", "squad_pred.json"),
}


def scorer_files(dataset, folder, subset="all"):
    """(reference file or folder, prediction file) that decode writes for a subset."""
    names = SCORER_FILES[presets.DATASETS[dataset].scorer]
    ref, pred = (os.path.join(folder, name.format(dataset)) for name in names)
    return (ref, pred) if subset == "all" else (subset_path(ref, subset), subset_path(pred, subset))


def decode_stage(model, beam, args, paths):
    spec = presets.DATASETS[args.dataset]
    framework = model.framework
    ref, pred = scorer_files(args.dataset, model.folder)
    argv = [framework_python(framework), framework_script(framework, "gpt2_decode.py"), "--vocab", paths.vocab,
            "--sample_file", beam.outputs.predictions, "--input_file", model.tests.outputs.test_formatted,
            "--output_ref_file", ref, "--output_pred_file", pred, "--ref_type", args.dataset, *spec.decode]
    outputs = [path for subset in spec.subsets for path in scorer_files(args.dataset, model.folder, subset)]
    return Stage(model.stage_name("decode"), model.folder, "decode", [Command(argv, cwd=framework_cwd(framework))],
                 outputs=outputs, upstream=[beam], role=model,
                 verify=verify_scorer_files(args.dataset, model.folder, model.tests.outputs))


def merged_scores(parts):
    """`parts` (subset -> its scores file) -> one flat object, the metrics of subsets other than `all` suffixed.
    A file that is not an object of numbers is Damaged (an NLGError)."""
    merged = {}
    for subset, path in parts.items():
        scores = read_json_output(path)
        if not (isinstance(scores, dict) and scores and all(isinstance(v, (int, float)) for v in scores.values())):
            raise Damaged(path, "not an object of scores")
        merged.update({(k if subset == "all" else f"{k}_{subset}"): v for k, v in scores.items()})
    return merged


def merge_scores(folder, parts, merged_path):
    """`parts` (subset -> its scores file in folder/scores/) -> one flat object at `merged_path`."""
    def step(log):
        merged = merged_scores(parts)
        write_json(merged_path, merged)
        log("scores: " + ", ".join(f"{k} {v:.4f}" for k, v in merged.items()))
        return {"scores": merged}
    return Call(step, f"merge {folder}/scores/*.json -> scores.json")


def scorer_argv(python, dataset, ref, pred, out):
    scorer = presets.DATASETS[dataset].scorer
    if scorer == "generation":
        return [python, os.path.join(ROOT, "eval", "generation_eval.py"), "-R", os.path.join(ref, "reference"),
                "-H", pred, "-nr", "6", "-m", presets.GENERATION_METRICS, "--json", out]
    program = {"e2e": "measure_scores.py", "squad": "squad_eval.py"}[scorer]
    return [python, os.path.join(ROOT, "eval", program), ref, pred, "--json", out]


def score_stage(model, decode, dataset):
    python = framework_python(model.framework)
    parts = {subset: os.path.join(model.folder, "scores", f"{subset}.json")
             for subset in presets.DATASETS[dataset].subsets}
    commands = [Command(scorer_argv(python, dataset, *scorer_files(dataset, model.folder, subset), out))
                for subset, out in parts.items()]
    merged = os.path.join(model.folder, "scores.json")
    steps = [*commands, merge_scores(model.folder, parts, merged)]
    return Stage(model.stage_name("score"), model.folder, "score", steps, outputs=named_outputs(scores=merged),
                 upstream=[decode], role=model, verify=verify_scores(parts))


def evaluation_stages(model, args, paths):
    """beam -> decode -> score of one model under test."""
    beam = beam_stage(model, args)
    decode = decode_stage(model, beam, args, paths)
    return Evaluation(model, beam, decode, score_stage(model, decode, args.dataset))


def framework_stages(framework, args, paths, init, prepare, tests, base_stages):
    """[zero-shot beam, decode, score,] then per seed (one without --seeds) train, [best epoch,] beam, decode,
    score of one framework, and its evaluations. `tests`: the stage that wrote the test files (prepare or the test
    subset). Every seed trains on the same data from the same base; the zero-shot base is evaluated once."""
    folder = paths.framework(framework)
    zero_shot = []
    if args.preset_spec.zero_shot and args.variant == "lora":  # (a variant's run shares the base of the main run)
        base = ModelUnderTest(framework, os.path.join(folder, "zero_shot"), init, None, tests, (tests, *base_stages))
        zero_shot.append(evaluation_stages(base, args, paths))
    stages = [stage for evaluation in zero_shot for stage in evaluation.stages]
    lora = []
    for seed in args.seeds or [None]:
        work_dir = seed_folder(folder, seed)
        settings = {**presets.train_settings(args.dataset, args.preset, args.variant), "model_card": args.model_card}
        if seed is not None:
            settings["random_seed"] = seed
        train = train_stage(tagged("train", framework, seed), framework, prepare, work_dir, settings, init,
                            ("train", args.extra["train"]), args.nproc, base_stages, seeded=seed is not None)
        chosen = best_epoch_stage(tagged("best epoch", framework, seed), train, work_dir) if args.best_epoch \
            else None
        trained = chosen or train
        evaluation = evaluation_stages(ModelUnderTest(framework, work_dir, init, trained.outputs.checkpoint, tests,
                                                      (trained, tests), seed, args.variant), args, paths)
        stages += [train, *([chosen] if chosen else []), *evaluation.stages]
        lora.append(evaluation)
    return stages, [*zero_shot, *lora]


def compare_stage(args, paths, lora, seed=None):
    """scripts/compare_logs.py on the training logs of the LoRA evaluations `lora` (one per framework, of one
    seed with --seeds)."""
    suffix = "" if seed is None else f"_seed{seed}"
    run = presets.run_name(args.dataset, args.variant)
    image = os.path.join(paths.img, f"{run}_{args.preset}{suffix}_alignment.png")
    table = os.path.join(paths.run, f"alignment{suffix}.md")
    argv = [sys.executable, os.path.join(ROOT, "scripts", "compare_logs.py"), *(e.model.folder for e in lora),
            "--out", image, "--labels", *(e.model.framework for e in lora), "--md", table]
    name, slug = ("compare frameworks", "compare") if seed is None else \
        (f"compare frameworks (seed {seed})", f"compare_seed{seed}")
    return Stage(name, paths.run, slug, [Command(argv)], outputs=named_outputs(image=image, table=table),
                 upstream=[e.score for e in lora], verify=verify_comparison)


def plan(args):
    """All stages of the run, in order, and the evaluations among them."""
    paths = Paths(args)
    prepare = prepare_stage(args, paths)
    stages = [prepare]
    tests = prepare
    if args.test_inputs:
        tests = test_subset_stage(args, paths, prepare)
        stages.append(tests)
    base_stages = cpu_base_stages(args, paths) if args.builds_base else []
    init = paths.base_dir if base_stages else base_checkpoint(args)
    stages += base_stages
    evaluations = []
    for framework in args.frameworks:
        framework_run, framework_evaluations = framework_stages(framework, args, paths, init, prepare, tests,
                                                                base_stages)
        stages += framework_run
        evaluations += framework_evaluations
    lora = [evaluation for evaluation in evaluations if not evaluation.model.zero_shot]
    if len(args.frameworks) == 2:
        for seed in args.seeds or [None]:
            stages.append(compare_stage(args, paths, [e for e in lora if e.model.seed == seed], seed))
    return Plan(paths, stages, evaluations)


def written_folders(planned):
    """Folders the pipeline writes beyond its stages' own and their outputs': the summary's, the scorers'."""
    return [planned.paths.run, *(os.path.join(e.model.folder, "scores") for e in planned.evaluations)]


def base_checkpoint(args):
    """--init_checkpoint, or the preset's default place for a downloaded GPT-2; it must exist."""
    path = os.path.abspath(args.init_checkpoint or os.path.join(ROOT, args.preset_spec.pretrained))
    if not os.path.exists(path):
        hint = ("--init_checkpoint: not found" if args.init_checkpoint else
                f"no pretrained GPT-2 here: --preset {args.preset} fine-tunes a pretrained {args.model_card}; "
                f"run `bash scripts/download_pretrained.sh md` or pass --init_checkpoint PATH "
                f"(without pretrained weights, --preset cpu is the demo for this machine)")
        raise NLGError(f"{path}: {hint}")
    return path


# ---------------------------------------------------------------- report

def summary(args, planned, times, seconds):
    """Markdown: scores of every evaluated model (with --seeds: mean ± std over the seeds, the framework difference
    against the seed spread, each seed's scores; also as summary.json), and the wall time of every stage."""
    lines = [f"# {args.dataset}, preset {args.preset}: {args.preset_spec.note}", "",
             f"`{' '.join(shlex.quote(a) for a in sys.argv)}`", ""]
    rows = []
    for evaluation in planned.evaluations:
        if evaluation.score.finished():  # (checked before it was skipped, or written just now)
            with open(evaluation.score.outputs.scores, encoding="utf-8") as f:
                rows.append((evaluation.model, json.load(f)))
    result = None
    if args.seeds:
        result = seed_results(args, planned, rows)
        lines += seeds.markdown(result)
    elif rows:
        metrics = list(rows[0][1])
        lines += ["| framework | model | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        lines += [f"| {model.framework} | {model.label} | " + " | ".join(f"{s.get(m, float('nan')):.4f}"
                                                                          for m in metrics) + " |"
                  for model, s in rows]
        lines.append("")
    lines += ["| stage | wall time |", "|---|---|"]
    lines += [f"| {t.name} | {'skipped (done before)' if t.seconds is None else format_seconds(t.seconds)} |"
              for t in times]
    lines += [f"| **total** | {format_seconds(seconds)} |", ""]
    text = "\n".join(lines)
    path, json_path = (os.path.join(planned.paths.run, name) for name in ("summary.md", "summary.json"))
    if all(t.seconds is None for t in times) and os.path.exists(path) and same_results(json_path, result):
        say(f"[pipeline] summary: every stage skipped, so {path} stays as the run that made these results wrote it")
        return text
    with atomic_open(path) as f:
        f.write(text)
    if result is not None:
        write_json(json_path, {"dataset": args.dataset, "preset": args.preset, **result})
    elif os.path.exists(json_path):  # a --seeds run's, which summary.md no longer describes
        os.remove(json_path)
    return text


def seed_results(args, planned, rows):
    """What summary.json holds of a --seeds run (lora_nlg.pipeline.seeds.summarize) for the finished rows."""
    def checkpoint(model):
        if model.zero_shot:
            return None
        with contextlib.suppress(StageFailed, KeyError):
            return os.path.relpath(resolve(model.adapter), planned.paths.run)
        return None
    return seeds.summarize([{"framework": model.framework, "model": model.label, "seed": model.seed,
                             "folder": os.path.relpath(model.folder, planned.paths.run),
                             "checkpoint": checkpoint(model), "scores": scores} for model, scores in rows],
                           args.seeds)


def same_results(json_path, result):
    """Whether summary.json already describes these results (a run without --seeds: there is none)."""
    if result is None:
        return not os.path.exists(json_path)
    try:
        with open(json_path, encoding="utf-8") as f:
            written = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(written, dict):
        return False
    written = {key: value for key, value in written.items() if key not in ("dataset", "preset")}
    return json.dumps(written, sort_keys=True) == json.dumps(json.loads(json.dumps(result)), sort_keys=True)


# ---------------------------------------------------------------- command line

def seed_list(text):
    try:
        return seeds.parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=list(presets.DATASETS))
    parser.add_argument("--framework", default="both", choices=[*presets.FRAMEWORKS, "both"], help="default both")
    parser.add_argument("--preset", default="sampled", choices=list(presets.PRESETS),
                        help="default sampled; " + "; ".join(
                            f"{p.name}: {p.note} (trained_models/{p.setup}/)" for p in presets.PRESETS.values()
                        ).replace("%", "%%"))
    parser.add_argument("--source", help="local data mirror (layout of microsoft/LoRA examples/NLG); default: download")
    parser.add_argument("--init_checkpoint", help="pretrained GPT-2 (file or HF folder); paper / sampled default: "
                                                  "pretrained_checkpoints/gpt2-medium; cpu default: build the base")
    parser.add_argument("--model_card", help="model shape (default: the preset's, gpt2.md or gpt2.tiny)")
    parser.add_argument("--test_inputs", type=int, help="decode only N unique test inputs, spread over the test set "
                                                        "(quick runs)")
    parser.add_argument("--extra", action="append", default=[], metavar="STAGE=FLAGS",
                        help=f"append FLAGS to the command of STAGE ({', '.join(EXTRA_STAGES)}), e.g. "
                             f"'train=--max_step 20'; repeatable")
    parser.add_argument("--out", help="run folder (default trained_models/<setup>/<dataset>)")
    parser.add_argument("--data_root", default=os.path.join(ROOT, "data"), help="where prepared data goes")
    parser.add_argument("--base_dir", default=os.path.join(ROOT, presets.CPU_BASE_DIR),
                        help="cpu preset: where the demo base model is written")
    parser.add_argument("--img_dir", default=os.path.join(ROOT, "img"), help="where the alignment figure goes")
    parser.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                        help="the paper's several-seed protocol: train and decode one adapter per seed and framework "
                             "(gpt2_ft.py --random_seed S) in <run>/<framework>/seed_S/, and summarize mean ± "
                             "sample std (n-1) per metric over the seeds, and the framework difference against the "
                             "seed spread (summary.md, summary.json); data preparation, the test subset and the cpu "
                             "base stay those of the default seed (110), the same for every seed, and the zero-shot "
                             "base is decoded once. Default: one run, seed 110, in <run>/<framework>/")
    parser.add_argument("--best_epoch", action="store_true",
                        help="beam-search the epoch-end checkpoint with the lowest validation loss (gpt2_ft.py "
                             "evaluates and saves at every epoch end) instead of the final one")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="run each training and beam stage in N processes (e.g. one per GPU) with the framework's "
                             "launcher: torchrun for PyTorch, mpirun for Jittor. The global batch stays the preset's "
                             "(--train_batch_size / N rows in each), so a run computes what one process computes "
                             "(with LoRA dropout > 0 the masks differ); the prediction files are byte-identical")
    variants = "; ".join(f"{v.name}: {v.label} ({' '.join(presets.as_flags(v.train))})"
                         for v in presets.VARIANTS.values() if v.train)
    parser.add_argument("--variant", default="lora", choices=list(presets.VARIANTS),
                        help=f"the adapter to train: lora (the preset's); {variants}. A variant runs in "
                             f"<run>_<variant>/ (trained_models/<setup>/<dataset>_<variant>) without the zero-shot "
                             f"base, which the lora run scores")
    parser.add_argument("--base_framework", default=presets.CPU_BASE_FRAMEWORK, choices=list(presets.FRAMEWORKS),
                        help=f"cpu preset: the tree that pretrains the base (default {presets.CPU_BASE_FRAMEWORK}, "
                             f"the faster one on the CPU); the base is the same file for both frameworks' runs")
    parser.add_argument("--dry_run", action="store_true", help="list the stages and their commands, run nothing")
    args = parser.parse_args(argv)
    if args.nproc < 1:
        parser.error("--nproc must be >= 1")
    try:
        args.preset_spec = presets.get_preset(args.preset, args.dataset)
    except NLGError as error:
        parser.error(str(error))
    args.builds_base = args.preset_spec.builds_base(args.init_checkpoint)
    if args.test_inputs is not None and args.test_inputs < 1:
        parser.error("--test_inputs must be >= 1")
    extra = {stage: [] for stage in EXTRA_STAGES}
    for item in args.extra:
        stage, _, flags = item.partition("=")
        if stage not in extra:
            parser.error(f"--extra {stage}: unknown stage (choose from {', '.join(EXTRA_STAGES)})")
        if stage in ("corpus", "pretrain") and not args.builds_base:
            parser.error(f"--extra {stage}: only the cpu preset builds a base model (and not with --init_checkpoint)")
        extra[stage] += shlex.split(flags)
    args.extra = extra
    args.frameworks = list(presets.FRAMEWORKS) if args.framework == "both" else [args.framework]
    args.model_card = args.model_card or presets.train_settings(args.dataset, args.preset)["model_card"]
    if args.model_card.endswith(".json"):  # a Hugging Face config.json: the stages run in NLG_<framework>/
        args.model_card = os.path.abspath(args.model_card)
    if args.source and not os.path.isdir(args.source):
        parser.error(f"--source {args.source}: not a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    planned = plan(args)
    if args.dry_run:
        for stage, why in plan_status(planned.stages):
            state = "done" if why is None else f"to run again, {why}" if why else "to run"
            say(f"[pipeline] {stage.name}: {state} ({stage.path('done.json')})")
            for step in stage.steps:
                say(f"   {step.describe()}")
        return
    clean_leftovers(planned.stages, written_folders(planned))
    clock = time.perf_counter()
    try:
        times = run_stages(planned.stages)
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    say(summary(args, planned, times, time.perf_counter() - clock))


if __name__ == "__main__":
    run_cli(main)
