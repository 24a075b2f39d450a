"""A LoRA adapter made by peft, imported with `scripts/export.py from-peft`, decodes to the same beams in both trees.

This test writes a base (gpt2.tiny, random, peaked: tests/alignment/beam_cases.py) as a transformers folder
and a few E2E test inputs; tests/alignment/peft_side.py (in .venv-torch: peft needs torch) makes the adapter
with peft's get_peft_model + save_pretrained, imports it and decodes the import with PyTorch's gpt2_beam.py.
Here the same peft folder is imported again, in the Jittor venv, and decoded with Jittor's gpt2_beam.py
(tests/NLG_jittor/jittor_decode.py): the two imports are the same bytes and give the same predictions.
"""
import pytest

from alignment.beam_cases import E2E_FLAGS, Run, peaked_weights, write_e2e_queries
from alignment.torch_side import run_torch_script
from jittor_decode import decode_in_jittor
from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.model.config import get_card
from testpaths import load_script

PEFT_SCRIPT = "peft_side.py"  # in tests/alignment
CARD = "gpt2.tiny"
N_INPUTS = 6
BASE_SEED, PEFT_SEED = 4, 8
SEARCH = ["--beam", "4", "--eval_len", "16"]  # after E2E_FLAGS: these win


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("peft_beams")
    write_e2e_queries(out / "test.jsonl", N_INPUTS)
    write_hf_gpt2(out / "base", peaked_weights(get_card(CARD), BASE_SEED), get_card(CARD))
    beam_flags = ["--data", str(out / "test.jsonl"), "--model_card", CARD, "--init_checkpoint", str(out / "base"),
                  "--batch_size", "3", "--output_file", "predict.jsonl", "--device", "cpu", *E2E_FLAGS, *SEARCH]
    run_torch_script(PEFT_SCRIPT, "--base", out / "base", "--peft_out", out / "peft", "--seed", PEFT_SEED,
                     "--decode_dir", out / "torch", "--", *beam_flags)
    load_script("scripts/export.py").main(["from-peft", str(out / "peft"), "--out", str(out / "jittor" / "model.0")])
    torch_run = Run(out / "torch", (out / "torch" / "stdout.txt").read_text())
    jittor_run = Run(out / "jittor", decode_in_jittor(out / "jittor" / "model.0", out / "jittor", beam_flags))
    return out, torch_run, jittor_run


def test_both_imports_of_a_peft_adapter_are_the_same_bytes(runs):
    out, _, _ = runs
    for suffix in (".safetensors", ".json"):
        assert (out / "jittor" / f"model.0{suffix}").read_bytes() == (out / "torch" / f"model.0{suffix}").read_bytes()
    adapter = load_adapter(out / "jittor" / "model.0")
    assert (adapter.card, adapter.framework, adapter.lora.r) == (CARD, "peft", 8)
    assert adapter.lora.targets == ("q", "k", "v", "o", "fc", "proj")


def test_both_frameworks_decode_a_peft_adapter_to_the_same_beams(runs):
    _, torch_run, jittor_run = runs
    print(f"torch {torch_run.timing}, jittor {jittor_run.timing}")
    assert len(jittor_run.predictions) == N_INPUTS
    assert jittor_run.predictions == torch_run.predictions
    assert jittor_run.file == torch_run.file and jittor_run.lines == torch_run.lines
    assert all(len(item["predict"]) > 0 for item in jittor_run.predictions)
    assert len({tuple(item["predict"]) for item in jittor_run.predictions}) > N_INPUTS // 2  # input-dependent
