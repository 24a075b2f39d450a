"""One pipeline for E2E, WebNLG, DART and SQuAD: prepare -> train -> beam -> decode -> score, in each framework.

    bash scripts/run_e2e.sh [--framework pytorch|jittor|both] [--preset paper|sampled|cpu] [--source DIR]
                            [--init_checkpoint PATH]           (run_webnlg.sh, run_dart.sh, run_squad.sh alike)
    = python scripts/pipeline.py --dataset e2e ...              (--dry_run lists the stages and commands)

Stages, each skipped when it finished before with the same settings (lora_nlg/pipeline/stages.py; a failure
stops the pipeline and names the stage's log):
  prepare              data/prepare.py -> data/<dataset>/<full|sampled_18pct>/
  corpus, pretrain,    cpu preset only: the demo's base, gpt2.tiny trained as a language model on
  export               non-E2E text by the PyTorch tree -> pretrained_checkpoints/cpu_demo_base/ (HF layout;
                       built once, shared by the E2E and SQuAD demos)
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
"""
import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from anywhere, with any python that has the requirements

from lora_nlg.checkpoints.adapter import load_adapter  # noqa: E402
from lora_nlg.checkpoints.hf_export import write_hf_gpt2  # noqa: E402
from lora_nlg.data.sampling import evenly_spaced  # noqa: E402
from lora_nlg.decode import beam_cli  # noqa: E402
from lora_nlg.decode.to_text import subset_path  # noqa: E402
from lora_nlg.pipeline import presets  # noqa: E402
from lora_nlg.pipeline.frameworks import framework_cwd, framework_python, framework_script  # noqa: E402
from lora_nlg.pipeline.stages import Call, Command, Ref, Stage, StageFailed, format_seconds, run_stages, say  # noqa: E402
from lora_nlg.train import cli as train_cli  # noqa: E402
from lora_nlg.train.logs import read_log  # noqa: E402
from lora_nlg.train.state import STATE_FILE  # noqa: E402
from lora_nlg.util.errors import NLGError, run_cli  # noqa: E402
from lora_nlg.util.files import atomic_open  # noqa: E402
from lora_nlg.util.jsonl import read_jsonl, write_jsonl  # noqa: E402

EXTRA_STAGES = ("corpus", "pretrain", "train", "beam")


class Paths:
    """Where everything of one pipeline run lives."""

    def __init__(self, args):
        preset = presets.PRESETS[args.preset]
        self.data_root = os.path.abspath(args.data_root)
        self.data = os.path.join(self.data_root, args.dataset, presets.data_variant(preset.fraction_of(args.dataset)))
        self.vocab = os.path.join(self.data_root, "vocab")
        self.run = os.path.abspath(args.out or os.path.join(ROOT, "trained_models", preset.setup, args.dataset))
        self.corpus = os.path.join(self.data_root, "cpu_demo_base")
        self.pretrain = os.path.join(os.path.dirname(self.run), "base")  # the cpu base, shared by its datasets
        self.base_dir = os.path.abspath(args.base_dir)
        self.img = os.path.abspath(args.img_dir)

    def framework(self, name):
        return os.path.join(self.run, name)


def check_flags(stage, parse, argv):
    """Parse a stage's flags now, so that a bad --extra flag stops the run before anything runs."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parse(argv)
    except SystemExit:
        raise NLGError(f"--extra {stage}: {captured.getvalue().strip().splitlines()[-1]}") from None


# ---------------------------------------------------------------- stages

def prepare_stage(args, paths):
    argv = [sys.executable, os.path.join(ROOT, "data", "prepare.py"), "--dataset", args.dataset,
            "--fraction", f"{presets.PRESETS[args.preset].fraction_of(args.dataset):g}",
            "--seed", str(presets.PAPER_SEED), "--out", paths.data, "--vocab-dir", paths.vocab,
            *presets.as_flags(presets.prepare_settings(args.dataset, args.preset))]
    if args.source:
        argv += ["--source", args.source]
    files = [os.path.join(paths.data, name) for name in
             ("train.jsonl", "valid.jsonl", "test.jsonl", "test_formatted.jsonl", "manifest.json")]
    return Stage("prepare", paths.data, "prepare", [Command(argv)], outputs=files)


def spread_inputs(formatted, encoded, count, folder):
    """Write the test rows of `count` unique inputs spread evenly over the test set (so WebNLG keeps seen and
    unseen categories) to `folder`, formatted and encoded files still parallel."""
    def step(log):
        rows = [item for _, item in read_jsonl(formatted)]
        ids = [item for _, item in read_jsonl(encoded)]
        if len(rows) != len(ids):
            raise NLGError(f"{encoded}: {len(ids)} rows but {formatted} has {len(rows)}")
        chosen = set(evenly_spaced(list(dict.fromkeys(row["context"] for row in rows)), count))
        keep = [i for i, row in enumerate(rows) if row["context"] in chosen]
        write_jsonl(os.path.join(folder, "test_formatted.jsonl"), (rows[i] for i in keep))
        write_jsonl(os.path.join(folder, "test.jsonl"), (ids[i] for i in keep))
        log(f"test subset: {len(chosen)} inputs ({len(keep)} rows) spread over {formatted}")
        return {}
    return Call(step, f"{count} test inputs spread over {formatted} -> {folder}")


def test_subset_stage(args, paths, prepare):
    folder = os.path.join(paths.run, f"test_{args.test_inputs}_inputs")
    step = spread_inputs(os.path.join(paths.data, "test_formatted.jsonl"), os.path.join(paths.data, "test.jsonl"),
                         args.test_inputs, folder)
    files = [os.path.join(folder, "test.jsonl"), os.path.join(folder, "test_formatted.jsonl")]
    return Stage("test subset", paths.run, "test_subset", [step], outputs=files, upstream=[prepare])


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


def train_stage(name, framework, train_data, valid_data, work_dir, settings, init, extra, upstream):
    argv = [framework_python(framework), framework_script(framework, "gpt2_ft.py"), "--train_data", train_data,
            "--valid_data", valid_data, "--work_dir", work_dir, *presets.as_flags(settings)]
    if init is not None:
        argv += ["--init_checkpoint", init]
    extra_stage, extra_flags = extra
    check_flags(extra_stage, lambda a: train_cli.parse_args(a, framework), argv[2:] + extra_flags)
    command = Command(argv + extra_flags, cwd=framework_cwd(framework),
                      resume=("--resume", os.path.join(work_dir, STATE_FILE)))
    stage = Stage(name, work_dir, "train", [command], upstream=upstream, collect=lambda: final_checkpoint(work_dir))
    stage.outputs = [Ref(stage, "checkpoint")]
    return stage


def export_stage(paths, pretrain):
    """The pretraining run's final (full-weights) checkpoint -> the HF-layout base folder."""
    def step(log):
        adapter = load_adapter(pretrain.results()["checkpoint"])
        write_hf_gpt2(paths.base_dir, adapter.tensors, adapter.config)
        log(f"wrote {paths.base_dir}/model.safetensors and config.json ({adapter.card}, step {adapter.step})")
        return {}
    files = [os.path.join(paths.base_dir, name) for name in ("model.safetensors", "config.json")]
    call = Call(step, f"export the final checkpoint of {paths.pretrain} to {paths.base_dir}")
    return Stage("export base", paths.pretrain, "export", [call], outputs=files, upstream=[pretrain])


def cpu_base_stages(args, paths):
    """corpus -> pretrain (PyTorch) -> export: the cpu demo's base model."""
    argv = [sys.executable, os.path.join(ROOT, "data", "prepare_corpus.py"), "--out", paths.corpus,
            "--vocab-dir", paths.vocab] + (["--source", args.source] if args.source else []) + args.extra["corpus"]
    files = [os.path.join(paths.corpus, name) for name in ("train.jsonl", "valid.jsonl", "manifest.json")]
    corpus = Stage("corpus", paths.corpus, "corpus", [Command(argv)], outputs=files)
    pretrain = train_stage("pretrain base (pytorch)", "pytorch", files[0], files[1], paths.pretrain,
                           presets.CPU_PRETRAIN, None, ("pretrain", args.extra["pretrain"]), [corpus])
    return [corpus, pretrain, export_stage(paths, pretrain)]


def beam_stage(name, framework, test, folder, init, adapter, args, upstream):
    argv = [framework_python(framework), framework_script(framework, "gpt2_beam.py"), "--data", test,
            "--init_checkpoint", init]
    argv += ["--lora_checkpoint", adapter] if adapter is not None else ["--model_card", args.model_card]
    argv += [*presets.as_flags(presets.beam_settings(args.dataset, args.preset)), *args.extra["beam"]]
    flags = check_flags("beam", lambda a: beam_cli.parse_args(a, framework), [str(item) for item in argv[2:]])
    output = f"predict.{presets.beam_label(vars(flags))}.jsonl"
    argv += ["--work_dir", folder, "--output_file", output]
    return Stage(name, folder, "beam", [Command(argv, cwd=framework_cwd(framework))],
                 outputs=[os.path.join(folder, output)], upstream=upstream)


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


def decode_stage(name, framework, formatted, beam, folder, args, paths):
    spec = presets.DATASETS[args.dataset]
    ref, pred = scorer_files(args.dataset, folder)
    argv = [framework_python(framework), framework_script(framework, "gpt2_decode.py"), "--vocab", paths.vocab,
            "--sample_file", beam.outputs[0], "--input_file", formatted, "--output_ref_file", ref,
            "--output_pred_file", pred, "--ref_type", args.dataset, *spec.decode]
    outputs = [path for subset in spec.subsets for path in scorer_files(args.dataset, folder, subset)]
    return Stage(name, folder, "decode", [Command(argv, cwd=framework_cwd(framework))],
                 outputs=outputs, upstream=[beam])


def merge_scores(dataset, folder):
    """scores/<subset>.json -> scores.json: one flat object, metrics of subsets other than `all` suffixed."""
    def step(log):
        merged = {}
        for subset in presets.DATASETS[dataset].subsets:
            with open(os.path.join(folder, "scores", f"{subset}.json"), encoding="utf-8") as f:
                scores = json.load(f)
            merged.update({(k if subset == "all" else f"{k}_{subset}"): v for k, v in scores.items()})
        with atomic_open(os.path.join(folder, "scores.json")) as f:
            f.write(json.dumps(merged, indent=2) + "\n")
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


def score_stage(name, framework, decode, folder, dataset):
    python = framework_python(framework)
    commands = []
    for subset in presets.DATASETS[dataset].subsets:
        ref, pred = scorer_files(dataset, folder, subset)
        out = os.path.join(folder, "scores", f"{subset}.json")
        commands.append(Command(scorer_argv(python, dataset, ref, pred, out)))
    return Stage(name, folder, "score", [*commands, merge_scores(dataset, folder)],
                 outputs=[os.path.join(folder, "scores.json")], upstream=[decode])


def evaluation_stages(label, framework, folder, init, adapter, test, formatted, args, paths, upstream):
    beam = beam_stage(f"{label}beam ({framework})", framework, test, folder, init, adapter, args, upstream)
    decode = decode_stage(f"{label}decode ({framework})", framework, formatted, beam, folder, args, paths)
    return [beam, decode, score_stage(f"{label}score ({framework})", framework, decode, folder, args.dataset)]


def framework_stages(framework, args, paths, init, prepare, tests, base_stages):
    """[zero-shot beam, decode, score,] train, beam, decode, score of one framework.
    `tests`: (stage that wrote the test files, encoded test file, formatted test file)."""
    folder = paths.framework(framework)
    test_stage, test, formatted = tests
    stages = []
    if args.preset == "cpu":
        stages += evaluation_stages("zero-shot ", framework, os.path.join(folder, "zero_shot"), init, None,
                                    test, formatted, args, paths, [test_stage, *base_stages])
    settings = {**presets.train_settings(args.dataset, args.preset), "model_card": args.model_card}
    train = train_stage(f"train ({framework})", framework, os.path.join(paths.data, "train.jsonl"),
                        os.path.join(paths.data, "valid.jsonl"), folder, settings, init,
                        ("train", args.extra["train"]), [prepare, *base_stages])
    stages.append(train)
    stages += evaluation_stages("", framework, folder, init, Ref(train, "checkpoint"), test, formatted, args, paths,
                                [train, test_stage])
    return stages


def compare_stage(args, paths, score_stages):
    image = os.path.join(paths.img, f"{args.dataset}_{args.preset}_alignment.png")
    table = os.path.join(paths.run, "alignment.md")
    argv = [sys.executable, os.path.join(ROOT, "scripts", "compare_logs.py"), paths.framework("pytorch"),
            paths.framework("jittor"), "--out", image, "--labels", "pytorch", "jittor", "--md", table]
    return Stage("compare frameworks", paths.run, "compare", [Command(argv)], outputs=[image, table],
                 upstream=score_stages)


def plan(args):
    """All stages of the run, in order."""
    paths = Paths(args)
    prepare = prepare_stage(args, paths)
    stages = [prepare]
    tests = (prepare, *prepare.outputs[2:4])
    if args.test_inputs:
        stages.append(test_subset_stage(args, paths, prepare))
        tests = (stages[-1], *stages[-1].outputs)
    base_stages = cpu_base_stages(args, paths) if args.preset == "cpu" and not args.init_checkpoint else []
    init = paths.base_dir if base_stages else base_checkpoint(args)
    stages += base_stages
    scored = []
    for framework in args.frameworks:
        stages += framework_stages(framework, args, paths, init, prepare, tests, base_stages)
        scored.append(stages[-1])
    if len(scored) == 2:
        stages.append(compare_stage(args, paths, scored))
    return paths, stages


def base_checkpoint(args):
    """--init_checkpoint, or the preset's default place for a downloaded GPT-2; it must exist."""
    preset = presets.PRESETS[args.preset]
    path = os.path.abspath(args.init_checkpoint or os.path.join(ROOT, preset.pretrained))
    if not os.path.exists(path):
        hint = ("--init_checkpoint: not found" if args.init_checkpoint else
                f"no pretrained GPT-2 here: --preset {args.preset} fine-tunes a pretrained {args.model_card}; "
                f"run `bash scripts/download_pretrained.sh md` or pass --init_checkpoint PATH "
                f"(without pretrained weights, --preset cpu is the demo for this machine)")
        raise NLGError(f"{path}: {hint}")
    return path


# ---------------------------------------------------------------- report

def summary(args, paths, stages, times, seconds):
    """Markdown: scores of every evaluated model, and the wall time of every stage."""
    lines = [f"# {args.dataset}, preset {args.preset}: {presets.PRESETS[args.preset].note}", "",
             f"`{' '.join(shlex.quote(a) for a in sys.argv)}`", ""]
    rows = []
    for stage in stages:
        if stage.slug == "score" and stage.is_done():
            label = "base, zero-shot" if stage.folder.endswith("zero_shot") else "LoRA"
            framework = os.path.basename(stage.folder if label == "LoRA" else os.path.dirname(stage.folder))
            with open(os.path.join(stage.folder, "scores.json"), encoding="utf-8") as f:
                rows.append((framework, label, json.load(f)))
    if rows:
        metrics = list(rows[0][2])
        lines += ["| framework | model | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        lines += [f"| {fw} | {label} | " + " | ".join(f"{s.get(m, float('nan')):.4f}" for m in metrics) + " |"
                  for fw, label, s in rows]
        lines.append("")
    lines += ["| stage | wall time |", "|---|---|"]
    lines += [f"| {t.name} | {'skipped (done before)' if t.seconds is None else format_seconds(t.seconds)} |"
              for t in times]
    lines += [f"| **total** | {format_seconds(seconds)} |", ""]
    text = "\n".join(lines)
    with atomic_open(os.path.join(paths.run, "summary.md")) as f:
        f.write(text)
    return text


# ---------------------------------------------------------------- command line

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
    parser.add_argument("--dry_run", action="store_true", help="list the stages and their commands, run nothing")
    args = parser.parse_args(argv)
    try:
        presets.get_preset(args.preset, args.dataset)
    except NLGError as error:
        parser.error(str(error))
    if args.test_inputs is not None and args.test_inputs < 1:
        parser.error("--test_inputs must be >= 1")
    extra = {stage: [] for stage in EXTRA_STAGES}
    for item in args.extra:
        stage, _, flags = item.partition("=")
        if stage not in extra:
            parser.error(f"--extra {stage}: unknown stage (choose from {', '.join(EXTRA_STAGES)})")
        if stage in ("corpus", "pretrain") and (args.preset != "cpu" or args.init_checkpoint):
            parser.error(f"--extra {stage}: only the cpu preset builds a base model (and not with --init_checkpoint)")
        extra[stage] += shlex.split(flags)
    args.extra = extra
    args.frameworks = list(presets.FRAMEWORKS) if args.framework == "both" else [args.framework]
    args.model_card = args.model_card or presets.train_settings(args.dataset, args.preset)["model_card"]
    if args.source and not os.path.isdir(args.source):
        parser.error(f"--source {args.source}: not a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    paths, stages = plan(args)
    if args.dry_run:
        for stage in stages:
            say(f"[pipeline] {stage.name}: {'done' if stage.is_done() else 'to run'} ({stage.path('done.json')})")
            for step in stage.steps:
                say(f"   {step.describe()}")
        return
    clock = time.perf_counter()
    try:
        times = run_stages(stages)
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    say(summary(args, paths, stages, times, time.perf_counter() - clock))


if __name__ == "__main__":
    run_cli(main)
