"""gpt2_beam.py as a program: flags, which weights it loads, the prediction file, and one-line errors."""
import json

import pytest
import torch

import gpt2_beam
from alignment.beam_cases import decode_with
from alignment.fixtures import lora_weights
from lora import merge_lora
from lora_nlg.checkpoints.adapter import save_adapter
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.decode.beam import BeamSettings
from lora_nlg.decode.beam_cli import beam_settings, parse_args
from lora_nlg.model.config import GPT2Config, LoRAConfig, get_card
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.util.errors import run_cli
from model import GPT2LMModel

LORA = LoRAConfig(r=4, alpha=32, targets="q,v")
TINY = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64)  # the real vocabulary: EOS_ID exists
CONTEXTS = [[1, 2, 3, 50], [7, 8, 50], [1, 2, 3, 50], [9, 10, 11, 12, 13, 50], [7, 8, 50]]  # 3 unique


pytestmark = pytest.mark.usefixtures("one_thread")


def trained_lora(config, seed=5):
    """LoRA tensors with a non-zero B, so the adapter changes the outputs."""
    return lora_weights(config, LORA, seed, b_std=0.2)


@pytest.fixture
def run_dir(tmp_path):
    with open(tmp_path / "test.jsonl", "w") as f:
        for context in CONTEXTS:
            f.write(json.dumps({"context": context, "completion": [4, EOS_ID]}) + "\n")
    return tmp_path


def beam_argv(run_dir, *extra):
    return ["--data", str(run_dir / "test.jsonl"), "--work_dir", str(run_dir), "--output_file", "out.jsonl",
            "--seq_len", "32", "--eval_len", "6", "--beam", "3", "--batch_size", "2", "--device", "cpu", *extra]


def read_predictions(path):
    return [json.loads(line) for line in open(path)]


def expected_predictions(weights, config, lora, settings, contexts):
    model = GPT2LMModel(config, lora).eval()
    model.load_weights(weights)
    merge_lora(model)
    # batch size 2 and seq_len 32, as the runs below: identical arithmetic
    return decode_with(gpt2_beam.beam_search, model, contexts, settings, batch_size=2, seq_len=32)


def test_adapter_run_decodes_each_unique_input_once(run_dir, capsys):
    lora = trained_lora(TINY)
    save_adapter(run_dir / "model.7", lora, TINY, LORA, "custom", 7, "pytorch")
    gpt2_beam.main(beam_argv(run_dir, "--random_seed", "3", "--lora_checkpoint", str(run_dir / "model.7"),
                             "--eos_token_id", "60"))
    assert "; device cpu; matmul precision: float32\n" in capsys.readouterr().out  # no TF32 on CPU
    records = read_predictions(run_dir / "out.jsonl")
    settings = BeamSettings(beam=3, eval_len=6, eos_ids=(EOS_ID, 60))
    unique = [[1, 2, 3, 50], [7, 8, 50], [9, 10, 11, 12, 13, 50]]
    expected = expected_predictions({**init_gpt2_weights(TINY, 3), **lora}, TINY, LORA, settings, unique)
    assert records == [{"id": i, "predict": p} for i, p in enumerate(expected)]
    base_only = expected_predictions(init_gpt2_weights(TINY, 3), TINY, None, settings, unique)
    assert base_only != expected  # the adapter was really applied


def test_eos_ids_append_to_the_default_and_reference_defaults():
    args = parse_args(["--data", "x", "--eos_token_id", "628"])
    assert beam_settings(args).eos_ids == (EOS_ID, 628)
    assert (args.batch_size, args.seq_len, args.eval_len, args.beam, args.no_repeat_ngram_size) == (10, 512, 256, 1, 4)
    assert (args.length_penalty, args.repetition_penalty, args.min_length) == (1.0, 1.0, 0)


def run_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(gpt2_beam.main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "Traceback" not in err
    return err


def test_adapter_and_flag_mismatch_is_a_one_line_error(run_dir, capsys):
    save_adapter(run_dir / "model.7", trained_lora(TINY), TINY, LORA, "custom", 7, "pytorch")
    argv = beam_argv(run_dir, "--random_seed", "3", "--lora_checkpoint", str(run_dir / "model.7.safetensors"))
    err = run_error(argv + ["--lora_alpha", "16"], capsys)
    assert err == f"error: {run_dir / 'model.7'}.json: adapter has lora_alpha 32, but --lora_alpha 16 was given"
    err = run_error(argv + ["--model_card", "gpt2.tiny"], capsys)
    assert err.startswith(f"error: {run_dir / 'model.7'}.json: adapter is for model 'custom'")


@pytest.mark.parametrize("extra, message", [
    ([], "error: --model_card: required (no adapter json to take the model from)"),
    (["--model_card", "gpt2.tiny"],
     "error: no base weights: give --init_checkpoint (or --random_seed for a random model)"),
    (["--model_card", "gpt2.tiny", "--random_seed", "1", "--lora_dim", "4"],
     "error: --lora_dim 4: no --lora_checkpoint to load the LoRA weights from"),
    (["--model_card", "gpt2.tiny", "--random_seed", "1", "--seq_len", "2048"],
     "error: --seq_len 2048: exceeds the model's 1024 positions"),
])
def test_missing_pieces_are_one_line_errors(run_dir, capsys, extra, message):
    assert run_error(beam_argv(run_dir, *extra), capsys) == message


def test_bad_data_file_is_named(run_dir, capsys):
    (run_dir / "test.jsonl").write_text('{"context": [1, 2]}\n')
    err = run_error(beam_argv(run_dir, "--model_card", "gpt2.tiny", "--random_seed", "1"), capsys)
    assert err == f"error: {run_dir / 'test.jsonl'}: line 1: missing key 'completion'"


def test_bad_flags_are_usage_errors(capsys):
    for argv in (["--data", "x", "--beam", "0"], ["--data", "x", "--eval_len", "512"],
                 ["--data", "x", "--init_checkpoint", "a", "--random_seed", "1"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv)
        assert exit_info.value.code == 2
    assert "--beam 0: must be >= 1" in capsys.readouterr().err


def reference_state(weights, prefix):
    """A state dict as microsoft/LoRA's gpt2_ft.py saves it (tied head included)."""
    state = {prefix + name: torch.from_numpy(w) for name, w in weights.items()}
    state[prefix.replace("transformer.", "") + "lm_head.decoder.weight"] = state[prefix + "wte.weight"]
    return {"model_state_dict": state}


def test_reference_checkpoints_load_lora_only_or_full(run_dir, capsys):
    """gpt2.tiny (a named card: raw files carry no model config); a full state replaces the base."""
    config = get_card("gpt2.tiny")
    base, lora = init_gpt2_weights(config, 11), trained_lora(config)
    settings = BeamSettings(beam=3, eval_len=6)
    expected = expected_predictions({**base, **lora}, config, LORA, settings, [[1, 2, 3, 50]])[0]
    base_only = expected_predictions(base, config, None, settings, [[1, 2, 3, 50]])[0]
    assert base_only != expected
    torch.save({"model_state_dict": {"transformer." + n: torch.from_numpy(w) for n, w in lora.items()}},
               run_dir / "lora_only.pt")
    torch.save(reference_state({**base, **lora}, "module.transformer."), run_dir / "full.pt")
    lora_flags = ["--model_card", "gpt2.tiny", "--lora_dim", "4", "--lora_alpha", "32"]
    gpt2_beam.main(beam_argv(run_dir, *lora_flags, "--random_seed", "11", "--lora_checkpoint",
                             str(run_dir / "lora_only.pt")))
    assert read_predictions(run_dir / "out.jsonl")[0]["predict"] == expected
    gpt2_beam.main(beam_argv(run_dir, *lora_flags, "--lora_checkpoint", str(run_dir / "full.pt")))
    assert read_predictions(run_dir / "out.jsonl")[0]["predict"] == expected
    torch.save(reference_state(base, "transformer."), run_dir / "full_finetune.pt")
    gpt2_beam.main(beam_argv(run_dir, "--model_card", "gpt2.tiny", "--lora_dim", "0", "--lora_checkpoint",
                             str(run_dir / "full_finetune.pt")))
    assert read_predictions(run_dir / "out.jsonl")[0]["predict"] == base_only
    capsys.readouterr()
    err = run_error(beam_argv(run_dir, "--model_card", "gpt2.tiny", "--lora_checkpoint", str(run_dir / "full.pt")),
                    capsys)
    assert err == (f"error: {run_dir / 'full.pt'}: a tensor file without adapter json needs --lora_dim and "
                   f"--lora_alpha (LoRA on q,v as the reference; --lora_dim 0: none)")
