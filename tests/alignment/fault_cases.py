"""Bad input and faults for gpt2_ft.py and gpt2_beam.py, written once and collected by both trees' test_faults.py.

Each tree's tests run in that tree's venv, where its src/ is installed, so `gpt2_ft` / `gpt2_beam` below are
that tree's scripts; the runs use the micro card (registered by the `micro_card` fixture).
Every case ends in a one-line `error: <file>: <problem>` with exit code 2, or in correct behaviour.
"""
import json
import os
import pathlib
import subprocess

import pytest

import gpt2_beam
import gpt2_ft
from alignment.train_runs import events, micro_argv, write_dataset
from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.model import config
from lora_nlg.model.config import GPT2Config
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.pipeline.frameworks import framework_python
from lora_nlg.util.errors import run_cli
from lora_nlg.util.jsonl import write_jsonl
from lora_nlg.util.work_dir import locked_work_dir
from testpaths import script_env

KILL_SCRIPT = pathlib.Path(__file__).with_name("kill_resume.py")


WORDS_CARD = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64)  # micro, with GPT-2's vocabulary (EOS)


@pytest.fixture(autouse=True)
def micro_words_card(monkeypatch):
    monkeypatch.setitem(config.CARDS, "gpt2.micro_words", WORDS_CARD)


def one_line_error(function, argv, capsys, out=None):
    """The one error line of a run that must stop with exit code 2 (its stdout is appended to `out`)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(function, argv)
    captured = capsys.readouterr()
    if out is not None:
        out.append(captured.out)
    err = captured.err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and err.startswith("error: "), err
    return err


def train_error(argv, capsys):
    return one_line_error(lambda a: gpt2_ft.main(gpt2_ft.TrainEngine, a), argv, capsys)


def usage_error(argv, capsys):
    """argparse's refusal: exit 2, its last stderr line names the flag."""
    with pytest.raises(SystemExit) as exit_info:
        gpt2_ft.main(gpt2_ft.TrainEngine, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_token_ids_outside_the_vocabulary_are_refused_in_training(data, tmp_path, capsys):
    bad = write_dataset(tmp_path / "bad.jsonl", 4, 2, vocab_size=600)  # the micro card has 512
    err = train_error(micro_argv((bad, data[1]), tmp_path / "run"), capsys)
    assert err.startswith(f"error: {bad}: line ") and "is outside the model's vocabulary of 512" in err
    err = train_error(micro_argv((data[0], bad), tmp_path / "run"), capsys)
    assert err.startswith(f"error: {bad}: line ")
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_an_example_whose_completion_is_cut_away_is_warned_about(data, tmp_path):
    rows = [json.loads(line) for line in open(data[0])]
    rows[0]["context"] = list(range(1, 41))  # 40 context tokens > --seq_len 32: no target left
    write_jsonl(tmp_path / "train.jsonl", rows)
    gpt2_ft.main(gpt2_ft.TrainEngine, micro_argv((tmp_path / "train.jsonl", data[1]), tmp_path / "run",
                                                 "--max_step", "1"))
    assert ("warning: 1 training examples have no completion token within seq_len 32 (the context fills it): they "
            "train on nothing") in (tmp_path / "run" / "log.txt").read_text()
    (start,) = events(tmp_path / "run", "start")
    assert start["without_targets"] == 1 and start["truncated"] == 1


def test_a_rerun_without_resume_over_a_resumable_run_is_refused_unless_overwrite(data, tmp_path, capsys):
    run = tmp_path / "run"
    gpt2_ft.main(gpt2_ft.TrainEngine, micro_argv(data, run, "--max_step", "2"))
    before = (run / "train_state.safetensors").read_bytes()
    err = train_error(micro_argv(data, run, "--max_step", "2", "--lr", "0.02"), capsys)
    assert err == (f"error: {run / 'train_state.safetensors'}: --work_dir holds a resumable run; --resume "
                   f"continues it, --overwrite starts over and deletes it")
    assert (run / "train_state.safetensors").read_bytes() == before  # nothing lost
    gpt2_ft.main(gpt2_ft.TrainEngine, micro_argv(data, run, "--max_step", "2", "--lr", "0.02", "--overwrite"))
    assert f"--overwrite: removed the previous run's {run / 'train_state.safetensors'}" in (run / "log.txt").read_text()
    assert events(run, "start")[-1]["args"]["lr"] == 0.02
    assert "not allowed with argument --resume" in usage_error(micro_argv(data, run, "--resume", "--overwrite"),
                                                              capsys)


def test_a_second_run_on_a_busy_work_dir_is_refused_before_it_writes(data, tmp_path, capsys):
    run = tmp_path / "run"
    with locked_work_dir(str(run)):  # as a first run holds it
        err = train_error(micro_argv(data, run, "--max_step", "1"), capsys)
        assert err.startswith(f"error: --work_dir {run}: in use by a running job (pid {os.getpid()} on ")
        assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_work_dir_that_is_a_file_is_one_line_for_training_and_decoding(data, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    err = train_error(micro_argv(data, tmp_path / "taken", "--max_step", "1"), capsys)
    assert err == f"error: --work_dir {tmp_path / 'taken'}: exists and is not a folder"
    out = []
    err = one_line_error(gpt2_beam.main, beam_argv(data[1], tmp_path / "taken"), capsys, out)
    assert err == f"error: --work_dir {tmp_path / 'taken'}: exists and is not a folder"
    assert "unique inputs" not in out[0] and "decoded" not in out[0]  # refused before reading or decoding


@pytest.mark.parametrize("flags, problem", [
    (["--lora_alpha", "0"], "--lora_alpha must be > 0"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--lora_targets", "q,,v"], "--lora_targets: LoRA target list 'q,,v' has an empty entry"),
    (["--adam_epsilon", "0"], "--adam_epsilon must be > 0"),
])
def test_hyper_parameters_that_train_nothing_are_refused(data, tmp_path, capsys, flags, problem):
    assert problem in usage_error(micro_argv(data, tmp_path / "run", *flags), capsys)


def beam_argv(test_data, work_dir, *extra):
    return ["--data", str(test_data), "--work_dir", str(work_dir), "--model_card", "gpt2.micro_words",
            "--random_seed", "3", "--seq_len", "32", "--eval_len", "4", "--beam", "2", "--device", "cpu", *extra]


def test_token_ids_outside_the_vocabulary_are_refused_in_decoding(tmp_path, capsys):
    bad = tmp_path / "test.jsonl"
    write_jsonl(bad, [{"context": [5, 6, 7], "completion": [8, 50256]},
                      {"context": [5, 50257, 7], "completion": [8, 50256]}])
    err = one_line_error(gpt2_beam.main, beam_argv(bad, tmp_path / "out"), capsys)
    assert err == (f"error: {bad}: line 2: token id 50257 in 'context' is outside the model's vocabulary of 50257 "
                   f"(encoded for another model?)")


def test_a_missing_lora_checkpoint_is_named(data, tmp_path, capsys):
    missing = tmp_path / "model.99"
    err = one_line_error(gpt2_beam.main, beam_argv(data[1], tmp_path / "out", "--lora_checkpoint", str(missing)),
                         capsys)
    assert err == (f"error: {missing}: --lora_checkpoint not found (neither an adapter <stem>.json + .safetensors "
                   f"nor a tensor file)")


def kill_and_resume(framework, data, tmp_path, kills):
    """Run kill_resume.py (a process of its own: Jittor ends the process whose child dies of SIGKILL)."""
    result = subprocess.run([framework_python(framework), str(KILL_SCRIPT), framework, str(data[0]), str(data[1]),
                             str(tmp_path), str(kills)], capture_output=True, text=True, timeout=900,
                            env=script_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def check_killed_runs_recover_exactly(framework, data, tmp_path, kills=10):
    report = kill_and_resume(framework, data, tmp_path, kills)
    assert report["kills"] == kills, report  # each kill landed while training ran
    assert report["losses_equal"] and report["valid_losses_equal"] and report["adapters_equal"], report
    assert report["partial_files"] == [], report
    assert report["steps"] == list(range(1, report["max_step"] + 1)), report


def hf_folder(folder, card, seed=1):
    """A Hugging Face GPT-2 folder (config.json + model.safetensors) of a random model of shape `card`."""
    return write_hf_gpt2(str(folder), init_gpt2_weights(card, seed), card)


def test_a_hugging_face_config_json_is_a_model_card_for_training_and_decoding(data, tmp_path):
    base = hf_folder(tmp_path / "base", WORDS_CARD)
    card = os.path.join(base, "config.json")
    gpt2_ft.main(gpt2_ft.TrainEngine, micro_argv(data, tmp_path / "run", "--max_step", "2", "--init_checkpoint",
                                                 base, card=card))
    adapter = json.loads((tmp_path / "run" / "model.2.json").read_text())
    assert GPT2Config.from_dict(adapter["model"]) == WORDS_CARD and adapter["card"] == card
    run_cli(gpt2_beam.main, ["--data", str(data[1]), "--init_checkpoint", base, "--model_card", card,
                             "--lora_checkpoint", str(tmp_path / "run" / "model.2"), "--seq_len", "32",
                             "--eval_len", "4", "--work_dir", str(tmp_path / "beam")])
    assert len((tmp_path / "beam" / "beam_prediction.jsonl").read_text().splitlines()) == 6


def test_a_config_json_that_does_not_fit_the_checkpoint_or_is_no_gpt2_is_one_line(data, tmp_path, capsys):
    base = hf_folder(tmp_path / "base", WORDS_CARD)
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**json.loads(pathlib.Path(base, "config.json").read_text()), "n_layer": 3}))
    error = train_error(micro_argv(data, tmp_path / "run", "--init_checkpoint", base, card=str(wider)), capsys)
    assert base in error and "h.2" in error
    other = tmp_path / "bert.json"
    other.write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    assert "not a GPT-2 config" in usage_error(micro_argv(data, tmp_path / "run2", card=str(other)), capsys)
    assert "cannot read" in usage_error(micro_argv(data, tmp_path / "run3", card=str(tmp_path / "none.json")), capsys)
