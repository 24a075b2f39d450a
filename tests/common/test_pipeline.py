"""scripts/pipeline.py and lora_nlg/pipeline/presets.py: which stages and flags each dataset and preset gets, what
each stage is (its role, its named outputs), and the errors.

Nothing here runs a stage: plans are built and their commands read (the smoke test runs one)."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.decode import to_text
from lora_nlg.decode.to_text import subset_path
from lora_nlg.model.config import get_card
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.pipeline import presets
from lora_nlg.pipeline.stages import Command, Damaged, StageTime
from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import sha256_file
from lora_nlg.util.jsonl import write_jsonl
from testpaths import VOCAB

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("pipeline", ROOT / "scripts" / "pipeline.py")
pipeline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pipeline)


def parse(tmp_path, *argv):
    return pipeline.parse_args(["--out", str(tmp_path / "run"), "--data_root", str(tmp_path / "data"),
                                "--img_dir", str(tmp_path / "img"), *argv])


def plan(tmp_path, *argv):
    return {stage.name: stage for stage in pipeline.plan(parse(tmp_path, *argv)).stages}


def argv_of(stage, index=0):
    return [str(item) for item in stage.steps[index].argv]


def flag(argv, name):
    """Value of the LAST `name` flag (argparse semantics: later flags win)."""
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "gpt2-medium.safetensors"
    path.write_bytes(b"")
    return str(path)


def test_paper_settings_per_dataset():
    e2e, dart = presets.train_settings("e2e", "paper"), presets.train_settings("dart", "paper")
    for key, value in {"train_batch_size": 8, "lr": 2e-4, "warmup_step": 500, "max_epoch": 5, "lora_dim": 4,
                       "lora_alpha": 32, "seq_len": 512, "model_card": "gpt2.md", "random_seed": 110}.items():
        assert e2e[key] == value == dart[key]
    assert (e2e["weight_decay"], e2e["lora_dropout"], e2e["label_smooth"]) == (0.01, 0.1, 0.1)
    assert (dart["weight_decay"], dart["lora_dropout"], dart["label_smooth"]) == (0.0, 0.0, 0.0)
    assert presets.train_settings("webnlg", "sampled") == e2e
    for dataset in ("e2e", "webnlg", "dart"):
        beam = presets.beam_settings(dataset, "paper")
        assert (beam["beam"], beam["length_penalty"], beam["no_repeat_ngram_size"], beam["eval_len"],
                beam["eos_token_id"]) == (10, 0.8, 4, 64, 628)
        assert presets.beam_label(beam) == "b10p08r4"


def test_flags_and_labels_are_formatted_as_the_clis_read_them():
    assert presets.as_flags({"lr": 0.0002, "beam": 10, "fixed_padding": True, "fp16": False, "x": None}) == \
        ["--lr", "0.0002", "--beam", "10", "--fixed_padding"]
    assert presets.as_flags({"eos_token_id": (198, 628)}) == ["--eos_token_id", "198", "--eos_token_id", "628"]
    assert presets.beam_label({"beam": 5, "length_penalty": 0.9, "no_repeat_ngram_size": 0}) == "b5p09"
    assert presets.data_variant(1.0) == "full" and presets.data_variant(0.18) == "sampled_18pct"


def test_paper_plan_runs_the_readme_recipe_in_both_frameworks(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "e2e", "--preset", "paper", "--init_checkpoint", checkpoint)
    assert list(stages) == ["prepare", *(f"{s} ({fw})" for fw in ("pytorch", "jittor")
                                         for s in ("train", "beam", "decode", "score")), "compare frameworks"]
    assert flag(argv_of(stages["prepare"]), "--fraction") == "1"
    for framework, venv in (("pytorch", ".venv-torch"), ("jittor", ".venv-jittor")):
        train, beam = argv_of(stages[f"train ({framework})"]), argv_of(stages[f"beam ({framework})"])
        assert train[0].endswith(f"{venv}/bin/python") and train[1].endswith(f"NLG_{framework}/src/gpt2_ft.py")
        assert stages[f"train ({framework})"].steps[0].cwd == str(ROOT / f"NLG_{framework}")
        assert flag(train, "--init_checkpoint") == checkpoint and flag(train, "--model_card") == "gpt2.md"
        assert flag(train, "--work_dir") == str(tmp_path / "run" / framework)
        assert [flag(beam, f) for f in ("--beam", "--length_penalty", "--no_repeat_ngram_size", "--eos_token_id")] \
            == ["10", "0.8", "4", "628"]
        assert flag(beam, "--lora_checkpoint") == f"{{train ({framework}): checkpoint}}"
        assert flag(beam, "--data").endswith("data/e2e/full/test.jsonl")
    assert "compare_logs.py" in argv_of(stages["compare frameworks"])[1]
    assert str(tmp_path / "img" / "e2e_paper_alignment.png") in argv_of(stages["compare frameworks"])


def test_dart_trains_without_regularisation_and_scores_with_generation_eval(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "dart", "--framework", "pytorch", "--init_checkpoint", checkpoint)
    train = argv_of(stages["train (pytorch)"])
    assert [flag(train, f) for f in ("--weight_decay", "--lora_dropout", "--label_smooth")] == ["0", "0", "0"]
    assert flag(argv_of(stages["prepare"]), "--fraction") == "0.18"
    decode = argv_of(stages["decode (pytorch)"])
    assert flag(decode, "--ref_type") == "dart" and "--tokenize" in decode and "--lower" in decode
    score = argv_of(stages["score (pytorch)"])
    assert score[1].endswith("eval/generation_eval.py") and flag(score, "-nr") == "6"
    assert "compare frameworks" not in stages


def test_webnlg_is_scored_on_all_seen_and_unseen(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "webnlg", "--framework", "jittor", "--init_checkpoint", checkpoint)
    commands = [s for s in stages["score (jittor)"].steps if isinstance(s, Command)]
    hypotheses = [flag([str(a) for a in c.argv], "-H") for c in commands]
    folder = tmp_path / "run" / "jittor"
    assert hypotheses == [str(folder / f"hypothesis_webnlg{s}") for s in ("", "_seen", "_unseen")]
    assert set(stages["decode (jittor)"].outputs) >= {str(folder / "references_webnlg_unseen"),
                                                     str(folder / "hypothesis_webnlg_seen")}


def test_squad_uses_the_seeds_lora_greedy_answers_and_em_f1(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "squad", "--framework", "pytorch", "--preset", "paper",
                  "--init_checkpoint", checkpoint)
    prepare = argv_of(stages["prepare"])
    assert [flag(prepare, f) for f in ("--fraction", "--seq_len", "--answer_tokens")] == ["1", "512", "32"]
    train = argv_of(stages["train (pytorch)"])
    assert [flag(train, f) for f in ("--lora_dim", "--lora_alpha", "--lora_targets", "--lora_dropout")] == \
        ["8", "16", "attn,mlp", "0.1"]
    beam = argv_of(stages["beam (pytorch)"])
    assert [flag(beam, f) for f in ("--beam", "--eval_len", "--no_repeat_ngram_size")] == ["1", "32", "0"]
    assert [beam[i + 1] for i, item in enumerate(beam) if item == "--eos_token_id"] == ["198", "628"]
    assert flag(beam, "--output_file") == "predict.b1p1.jsonl"
    folder = tmp_path / "run" / "pytorch"
    assert flag(argv_of(stages["decode (pytorch)"]), "--ref_type") == "squad"
    assert argv_of(stages["score (pytorch)"])[1:4] == [str(ROOT / "eval" / "squad_eval.py"),
                                                        str(folder / "squad_ref.json"), str(folder / "squad_pred.json")]


def test_cpu_squad_demo_samples_five_percent_and_shares_the_e2e_base(tmp_path):
    e2e = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--framework", "jittor", "--base_dir", str(tmp_path))
    squad = plan(tmp_path, "--dataset", "squad", "--preset", "cpu", "--framework", "jittor",
                 "--base_dir", str(tmp_path))
    assert squad["pretrain base (jittor)"].key == e2e["pretrain base (jittor)"].key  # built once for both demos
    prepare = argv_of(squad["prepare"])
    assert [flag(prepare, f) for f in ("--fraction", "--seq_len", "--test_window")] == ["0.05", "160", "answer"]
    assert flag(argv_of(squad["train (jittor)"]), "--seq_len") == "160"
    assert flag(argv_of(squad["zero-shot beam (jittor)"]), "--seq_len") == "160"


def test_cpu_preset_builds_a_base_then_scores_it_zero_shot_and_with_lora(tmp_path):
    stages = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--framework", "pytorch",
                  "--base_dir", str(tmp_path / "base"))
    assert list(stages)[:4] == ["prepare", "corpus", "pretrain base (jittor)", "export base"]
    pretrain = argv_of(stages["pretrain base (jittor)"])
    assert pretrain[0].endswith(".venv-jittor/bin/python")  # the faster tree on the CPU, whichever runs the demo
    assert [flag(pretrain, f) for f in ("--lora_dim", "--model_card", "--label_smooth")] == ["0", "gpt2.tiny", "0"]
    assert "--init_checkpoint" not in pretrain  # from scratch
    zero_shot = argv_of(stages["zero-shot beam (pytorch)"])
    assert "--lora_checkpoint" not in zero_shot and flag(zero_shot, "--init_checkpoint") == str(tmp_path / "base")
    train = argv_of(stages["train (pytorch)"])
    assert flag(train, "--init_checkpoint") == str(tmp_path / "base") and flag(train, "--model_card") == "gpt2.tiny"
    assert stages["train (pytorch)"].upstream[-1] is stages["export base"]


def test_cpu_preset_with_a_given_base_skips_pretraining(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--framework", "pytorch",
                  "--init_checkpoint", checkpoint)
    assert "corpus" not in stages and flag(argv_of(stages["train (pytorch)"]), "--init_checkpoint") == checkpoint


def test_extra_flags_are_appended_and_test_subset_is_used(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "e2e", "--framework", "pytorch", "--init_checkpoint", checkpoint,
                  "--extra", "train=--max_step 20 --lr 0.001", "--extra", "beam=--beam 4",
                  "--test_inputs", "7")
    train, beam = argv_of(stages["train (pytorch)"]), argv_of(stages["beam (pytorch)"])
    assert flag(train, "--max_step") == "20" and flag(train, "--lr") == "0.001"
    assert flag(beam, "--beam") == "4" and flag(beam, "--output_file") == "predict.b4p08r4.jsonl"
    assert flag(beam, "--data") == str(tmp_path / "run" / "test_7_inputs" / "test.jsonl")
    assert stages["beam (pytorch)"].upstream == [stages["train (pytorch)"], stages["test subset"]]
    assert stages["train (pytorch)"].upstream == [stages["prepare"]]  # the test subset does not retrain


def test_changing_a_training_flag_changes_every_downstream_key(tmp_path, checkpoint):
    base = plan(tmp_path, "--dataset", "e2e", "--framework", "pytorch", "--init_checkpoint", checkpoint)
    changed = plan(tmp_path, "--dataset", "e2e", "--framework", "pytorch", "--init_checkpoint", checkpoint,
                   "--extra", "train=--lr 0.001")
    assert base["prepare"].key == changed["prepare"].key
    for name in ("train (pytorch)", "beam (pytorch)", "decode (pytorch)", "score (pytorch)"):
        assert base[name].key != changed[name].key


def test_paper_preset_without_a_checkpoint_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "ROOT", str(tmp_path))  # no pretrained_checkpoints/ there
    with pytest.raises(NLGError, match="gpt2-medium: no pretrained GPT-2 here.*download_pretrained.sh md"):
        plan(tmp_path, "--dataset", "e2e", "--preset", "paper")
    with pytest.raises(NLGError, match="nowhere.bin: --init_checkpoint: not found"):
        plan(tmp_path, "--dataset", "e2e", "--preset", "sampled", "--init_checkpoint", str(tmp_path / "nowhere.bin"))


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "e2e", "--extra", "decode=--x"], "--extra decode: unknown stage"),
    (["--dataset", "e2e", "--preset", "sampled", "--extra", "pretrain=--max_step 3"], "only the cpu preset"),
    (["--dataset", "e2e", "--test_inputs", "0"], "--test_inputs must be >= 1"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pipeline.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bad_extra_flags_fail_before_anything_runs_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "e2e",
                             "--preset", "cpu", "--framework", "pytorch", "--out", str(tmp_path), "--dry_run",
                             "--extra", "beam=--beam 0"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: --extra beam: gpt2_beam.py: error: --beam 0: must be >= 1\n"


def test_presets_say_which_build_their_base_and_score_it_zero_shot():
    cpu, paper = presets.PRESETS["cpu"], presets.PRESETS["paper"]
    assert cpu.zero_shot and cpu.builds_base(None) and not cpu.builds_base("base.bin")
    assert not paper.zero_shot and not paper.builds_base(None)


def test_evaluation_stages_carry_the_model_they_test(tmp_path):
    """Every beam / decode / score stage knows its framework, zero-shot or LoRA, and the test files it reads."""
    result = pipeline.plan(parse(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--base_dir", str(tmp_path / "b"),
                                 "--test_inputs", "3"))
    stages = {stage.name: stage for stage in result.stages}
    subset = stages["test subset"]
    assert [(e.model.framework, e.model.label) for e in result.evaluations] == \
        [("pytorch", "base, zero-shot"), ("pytorch", "LoRA"), ("jittor", "base, zero-shot"), ("jittor", "LoRA")]
    for evaluation in result.evaluations:
        model = evaluation.model
        assert all(stage.role is model for stage in evaluation.stages)
        assert [stage.slug for stage in evaluation.stages] == ["beam", "decode", "score"]
        assert evaluation.beam.name == ("zero-shot " if model.zero_shot else "") + f"beam ({model.framework})"
        assert model.tests is subset and model.init == str(tmp_path / "b")
        assert flag(argv_of(evaluation.beam), "--data") == subset.outputs.test == str(tmp_path / "run" /
                                                                                      "test_3_inputs" / "test.jsonl")
        assert flag(argv_of(evaluation.decode), "--input_file") == subset.outputs.test_formatted
        assert flag(argv_of(evaluation.decode), "--sample_file") == evaluation.beam.outputs.predictions
        assert evaluation.score.outputs.scores == str(pathlib.Path(model.folder) / "scores.json")
        if model.zero_shot:
            assert model.folder == str(tmp_path / "run" / model.framework / "zero_shot")
        else:
            assert model.adapter == stages[f"train ({model.framework})"].outputs.checkpoint
    others = [stage for stage in result.stages if stage.slug not in ("beam", "decode", "score")]
    assert others and all(stage.role is None for stage in others)
    lora = [e.score for e in result.evaluations if not e.model.zero_shot]
    assert stages["compare frameworks"].upstream == lora


def test_stages_read_each_others_files_by_name(tmp_path, checkpoint):
    stages = plan(tmp_path, "--dataset", "webnlg", "--framework", "pytorch", "--init_checkpoint", checkpoint)
    data = tmp_path / "data" / "webnlg" / "sampled_18pct"
    prepare = stages["prepare"].outputs
    assert prepare._asdict() == {name: str(data / f) for name, f in (
        ("train", "train.jsonl"), ("valid", "valid.jsonl"), ("test", "test.jsonl"),
        ("test_formatted", "test_formatted.jsonl"), ("manifest", "manifest.json"))}
    train = argv_of(stages["train (pytorch)"])
    assert (flag(train, "--train_data"), flag(train, "--valid_data")) == (prepare.train, prepare.valid)
    assert flag(argv_of(stages["beam (pytorch)"]), "--data") == prepare.test
    assert flag(argv_of(stages["decode (pytorch)"]), "--input_file") == prepare.test_formatted


def test_every_cpu_demo_keeps_the_papers_per_dataset_settings():
    dart = presets.train_settings("dart", "cpu")
    assert (dart["weight_decay"], dart["lora_dropout"], dart["label_smooth"]) == (0.0, 0.0, 0.0)
    for dataset in ("e2e", "webnlg", "squad"):
        settings = presets.train_settings(dataset, "cpu")
        assert (settings["weight_decay"], settings["lora_dropout"], settings["label_smooth"]) == (0.01, 0.1, 0.1)
    assert presets.DATASETS["webnlg"].subsets == ("all", "seen", "unseen")


@pytest.mark.parametrize("variant, flags, label", [
    ("qv", {"--lora_dim": "4", "--lora_alpha": "32", "--lora_targets": "q,v", "--lr": "0.005"}, "LoRA q,v r=4"),
    ("full", {"--lora_dim": "0", "--lora_dropout": "0", "--lr": "0.001"}, "full fine-tuning"),
])
def test_a_variant_trains_another_adapter_on_the_same_data_and_base(tmp_path, variant, flags, label):
    argv = ["--dataset", "e2e", "--preset", "cpu", "--base_dir", str(tmp_path / "base")]
    planned = pipeline.plan(parse(tmp_path, *argv, "--variant", variant, "--out", str(tmp_path / f"run_{variant}")))
    stages = {stage.name: stage for stage in planned.stages}
    main = plan(tmp_path, *argv)
    default = pipeline.Paths(pipeline.parse_args(["--dataset", "e2e", "--preset", "cpu", "--variant", variant]))
    assert default.run == os.path.join(pipeline.ROOT, "trained_models", "cpu_demo", f"e2e_{variant}")
    assert not any(name.startswith("zero-shot") for name in stages)  # the main run scores the base
    for shared in ("corpus", "pretrain base (jittor)", "export base"):
        assert stages[shared].key == main[shared].key
    train = argv_of(stages["train (jittor)"])
    assert {name: flag(train, name) for name in flags} == flags
    assert {evaluation.model.label for evaluation in planned.evaluations} == {label}
    assert stages["compare frameworks"].outputs.image == str(tmp_path / "img" / f"e2e_{variant}_cpu_alignment.png")


def test_run_names_split_back_into_dataset_and_variant():
    """Run folders, figures and run_all's --only use the same names; every dataset name is free of `_`."""
    names = {presets.run_name(d, v): (d, v) for d in presets.DATASETS for v in presets.VARIANTS}
    assert len(names) == len(presets.DATASETS) * len(presets.VARIANTS)
    assert all(presets.split_run_name(name) == pair for name, pair in names.items())
    assert presets.run_name("e2e") == "e2e" and presets.run_name("dart", "qv") == "dart_qv"


def test_cpu_base_is_pretrained_on_the_corpus_files_and_exported_by_name(tmp_path):
    stages = plan(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--framework", "pytorch",
                  "--base_dir", str(tmp_path / "base"))
    corpus = stages["corpus"].outputs
    pretrain = argv_of(stages["pretrain base (jittor)"])
    assert (flag(pretrain, "--train_data"), flag(pretrain, "--valid_data")) == (corpus.train, corpus.valid)
    assert stages["export base"].outputs._asdict() == {"weights": str(tmp_path / "base" / "model.safetensors"),
                                                      "config": str(tmp_path / "base" / "config.json"),
                                                      "tokenizer": str(tmp_path / "base" / "tokenizer.json")}


def test_summary_rows_come_from_the_plan(tmp_path, monkeypatch):
    """Finished score stages are the rows, labelled by their models (folder names play no part)."""
    args = parse(tmp_path, "--dataset", "e2e", "--preset", "cpu", "--base_dir", str(tmp_path / "b"))
    result = pipeline.plan(args)
    for number, evaluation in enumerate(result.evaluations):
        if evaluation.model.framework == "jittor" and evaluation.model.zero_shot:
            continue  # not finished: no row
        score = evaluation.score
        pathlib.Path(score.path("done.json")).parent.mkdir(parents=True)
        pathlib.Path(score.path("done.json")).write_text(json.dumps({"key": score.key, "outputs": [], "results": {}}))
        pathlib.Path(score.outputs.scores).write_text(json.dumps({"BLEU": number / 10}))
    monkeypatch.setattr(sys, "argv", ["pipeline.py"])
    text = pipeline.summary(args, result, [StageTime("prepare", 1.0), StageTime("corpus", None)], 2.0)
    assert "| framework | model | BLEU |\n|---|---|---|\n| pytorch | base, zero-shot | 0.0000 |\n" \
           "| pytorch | LoRA | 0.1000 |\n| jittor | LoRA | 0.3000 |\n" in text
    assert "| prepare | 1.0s |\n| corpus | skipped (done before) |\n| **total** | 2.0s |" in text
    assert (tmp_path / "run" / "summary.md").read_text() == text


# ---------------------------------------------------------------- checks of finished stages' outputs

ROWS = {  # formatted test rows: 3 rows of 2 unique inputs (one of a seen category, one unseen)
    "e2e": [{"context": "name : A", "completion": "A one ."}, {"context": "name : A", "completion": "A two ."},
            {"context": "name : B", "completion": "B one ."}],
    "webnlg": [{"context": "A | p | x", "completion": "A p x .", "seen": True},
               {"context": "A | p | x", "completion": "x is A's p .", "seen": True},
               {"context": "B | q | y", "completion": "B q y .", "seen": False}],
    "squad": [{"context": "Context: A is x. Question: what is A? Answer:", "completion": " x", "id": "q1",
               "question": "what is A?", "title": "T", "answers": [{"text": "x"}]},
              {"context": "Context: A is x. Question: what is A? Answer:", "completion": " x", "id": "q2",
               "question": "what is A?", "title": "T", "answers": [{"text": "x"}]},
              {"context": "Context: B is y. Question: what is B? Answer:", "completion": " y", "id": "q3",
               "question": "what is B?", "title": "T", "answers": [{"text": "y"}]}],
}


def decoded(tmp_path, dataset):
    """gpt2_decode.py's real output files for ROWS[dataset] and 2 predictions; the decode stage's check."""
    tests = pipeline.files_in(str(tmp_path), test="test.jsonl", test_formatted="test_formatted.jsonl")
    write_jsonl(tests.test_formatted, ROWS[dataset])
    write_jsonl(tmp_path / "predict.jsonl", [{"id": 0, "predict": [87, 764]}, {"id": 1, "predict": [88, 764]}])
    ref, pred = pipeline.scorer_files(dataset, str(tmp_path))
    to_text.main(["--vocab", str(VOCAB), "--sample_file", str(tmp_path / "predict.jsonl"), "--input_file",
                  tests.test_formatted, "--output_ref_file", ref, "--output_pred_file", pred, "--ref_type", dataset,
                  *presets.DATASETS[dataset].decode])
    return pipeline.verify_scorer_files(dataset, str(tmp_path), tests), ref, pred


@pytest.mark.parametrize("dataset", ["e2e", "webnlg", "squad"])
def test_decode_files_are_checked_against_the_test_inputs(tmp_path, dataset, capsys):
    verify, ref, pred = decoded(tmp_path, dataset)
    verify(None, {})  # what decode wrote passes
    if dataset == "squad":
        answers = json.loads(pathlib.Path(pred).read_text())
        del answers["q3"]
        pathlib.Path(pred).write_text(json.dumps(answers))
        problem = f"{pred}: 2 answers for the 3 questions of {ref}"
    else:
        lines = pathlib.Path(pred).read_text().split("\n")
        pathlib.Path(pred).write_text("\n".join(lines[:1]) + ("\n" if dataset == "e2e" else ""))
        problem = f"{pred}: 1 lines for 2 inputs of {ref}"
    with pytest.raises(Damaged) as damage:
        verify(None, {})
    assert str(damage.value) == problem


def test_webnlg_subsets_are_checked_too(tmp_path, capsys):
    verify, ref, pred = decoded(tmp_path, "webnlg")
    reference = pathlib.Path(subset_path(ref, "unseen")) / "reference3"
    reference.write_text(reference.read_text() + "\nextra")
    with pytest.raises(Damaged, match=f"^{reference}: 2 lines for 1 unseen test inputs$"):
        verify(None, {})


def test_predictions_are_one_per_unique_test_input(tmp_path):
    tests = pipeline.files_in(str(tmp_path), test="test.jsonl")
    write_jsonl(tests.test, [{"context": [1, 2], "completion": [3]}, {"context": [1, 2], "completion": [4]},
                             {"context": [5], "completion": [6]}])
    predictions = tmp_path / "predict.jsonl"
    outputs = pipeline.named_outputs(predictions=str(predictions))
    verify = pipeline.verify_predictions(tests)
    write_jsonl(predictions, [{"id": 0, "predict": [7]}, {"id": 1, "predict": [8]}])
    verify(outputs, {})
    write_jsonl(predictions, [{"id": 0, "predict": [7]}])
    with pytest.raises(Damaged, match=f"^{predictions}: 1 lines for 2 unique inputs of {tests.test}$"):
        verify(outputs, {})
    predictions.write_text('{"id": 0, "predict": [7]}\n{"id": 1, "pre')
    with pytest.raises(Damaged, match=f"^{predictions}: line 2: malformed JSON"):
        verify(outputs, {})


def test_prepared_data_must_match_its_manifest(tmp_path):
    outputs = pipeline.files_in(str(tmp_path), train="train.jsonl", test="test.jsonl", manifest="manifest.json")
    write_jsonl(outputs.train, [{"context": [1], "completion": [2]}] * 3)
    write_jsonl(outputs.test, [{"context": [1], "completion": [2]}])
    manifest = {"files": {name: sha256_file(tmp_path / name) for name in ("train.jsonl", "test.jsonl")},
                "splits": {"train": {"references": 3}, "test": {"references": 1}}}
    pathlib.Path(outputs.manifest).write_text(json.dumps(manifest))
    pipeline.verify_data(outputs, {})
    write_jsonl(outputs.train, [{"context": [1], "completion": [2]}] * 2)
    with pytest.raises(Damaged, match=f"^{outputs.train}: 2 lines for 3 rows in manifest.json$"):
        pipeline.verify_data(outputs, {})
    write_jsonl(outputs.train, [{"context": [1], "completion": [9]}] * 3)
    with pytest.raises(Damaged, match=f"^{outputs.train}: its sha256 differs from the one in manifest.json$"):
        pipeline.verify_data(outputs, {})


def test_scores_must_be_the_merge_of_the_scorers_files(tmp_path):
    parts = {"all": str(tmp_path / "all.json"), "seen": str(tmp_path / "seen.json")}
    pathlib.Path(parts["all"]).write_text('{"BLEU": 0.5}')
    pathlib.Path(parts["seen"]).write_text('{"BLEU": NaN}')
    outputs = pipeline.named_outputs(scores=str(tmp_path / "scores.json"))
    pathlib.Path(outputs.scores).write_text('{"BLEU": 0.5, "BLEU_seen": NaN}')
    pipeline.verify_scores(parts)(outputs, {})
    pathlib.Path(outputs.scores).write_text('{"BLEU": 0.6, "BLEU_seen": NaN}')
    with pytest.raises(Damaged, match="scores.json: not the merge of"):
        pipeline.verify_scores(parts)(outputs, {})
    pathlib.Path(parts["seen"]).write_text("[]")
    with pytest.raises(Damaged, match="seen.json: not an object of scores"):
        pipeline.verify_scores(parts)(outputs, {})


def test_an_exported_base_must_load(tmp_path):
    card = get_card("gpt2.tiny")
    write_hf_gpt2(tmp_path, init_gpt2_weights(card, seed=1), card)
    outputs = pipeline.files_in(str(tmp_path), weights="model.safetensors", config="config.json")
    pipeline.verify_base(outputs, {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(Damaged, match=f"^{weights}: unreadable safetensors file"):
        pipeline.verify_base(outputs, {})
