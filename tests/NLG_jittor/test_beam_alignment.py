"""Jittor's gpt2_beam.py against PyTorch's on the same files: E2E test inputs, E2E decoding settings.

Both programs decode the first E2E test inputs with beam 10, length penalty 0.8, no-repeat-ngram 4
and EOS ids 50256 + 628 (eval_len 32 to stay fast) from identical weights: a base file this test
writes (gpt2.tiny with the real vocabulary, random, embeddings scaled up so each step has a few clear
favourites) plus a LoRA adapter with B ~ N(0, 1) that makes outputs input-dependent. The adapters cross over:
one written by the torch side (tests/alignment/torch_beam_reference.py, run in .venv-torch as a
subprocess) and one written here from Jittor weights; each is decoded by both programs.
"""
import numpy as np
import pytest

from alignment.beam_cases import ADAPTER_B_STD, E2E_FLAGS, Run, peaked_weights, write_e2e_queries
from alignment.fixtures import lora_weights
from alignment.torch_side import run_torch_script
from jittor_decode import decode_in_jittor
from lora import set_trainable, trainable_state_dict
from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.checkpoints.tensor_files import save_safetensors
from lora_nlg.model.config import LoRAConfig, get_card
from model import GPT2LMModel

REFERENCE_SCRIPT = "torch_beam_reference.py"  # in tests/alignment
CARD = "gpt2.tiny"
LORA = LoRAConfig(r=4, alpha=32, targets="q,v")
N_INPUTS = 24
BASE_SEED, TORCH_LORA_SEED, JITTOR_LORA_SEED = 4, 5, 6


def write_jittor_adapter(stem):
    """The adapter Jittor saves from a GPT2LMModel holding the shared numpy LoRA init (B ~ N(0, ADAPTER_B_STD))."""
    config = get_card(CARD)
    model = GPT2LMModel(config, LORA)
    lora = lora_weights(config, LORA, JITTOR_LORA_SEED, b_std=ADAPTER_B_STD)
    model.load_weights({**model.numpy_weights(), **lora})  # the base stays zeros: an adapter holds LoRA only
    set_trainable(model, LORA)
    return save_adapter(stem, model.numpy_weights(list(trainable_state_dict(model))), config, LORA, CARD, 1, "jittor")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each adapter decoded by each framework: {(framework, adapter's framework): Run}."""
    out = tmp_path_factory.mktemp("beam_alignment")
    write_e2e_queries(out / "test.jsonl", N_INPUTS)
    save_safetensors(out / "base.safetensors", peaked_weights(get_card(CARD), BASE_SEED))
    adapters = {"torch": out / "torch_adapter" / "model.1",
                "jittor": write_jittor_adapter(out / "jittor_adapter" / "model.1")}
    beam_flags = ["--data", str(out / "test.jsonl"), "--model_card", CARD, "--init_checkpoint",
                  str(out / "base.safetensors"), "--batch_size", "8", "--output_file", "predict.jsonl",
                  "--device", "cpu", *E2E_FLAGS]
    decodes = []
    for name, adapter in adapters.items():
        decodes += ["--decode", str(adapter), str(out / "torch" / name)]
    run_torch_script(REFERENCE_SCRIPT, "--write_adapter", adapters["torch"], "--lora_seed", TORCH_LORA_SEED, *decodes,
                     "--", *beam_flags)
    runs = {}
    for name, adapter in adapters.items():
        torch_dir, jittor_dir = out / "torch" / name, out / "jittor" / name
        runs["torch", name] = Run(torch_dir, (torch_dir / "stdout.txt").read_text())
        runs["jittor", name] = Run(jittor_dir, decode_in_jittor(adapter, jittor_dir, beam_flags))
    return adapters, runs


@pytest.mark.parametrize("adapter", ["torch", "jittor"])
def test_both_frameworks_decode_an_adapter_to_the_same_tokens(runs, adapter):
    """An adapter written by either framework gives the same tokens, file and printed lines in both programs."""
    _, runs = runs
    torch_run, jittor_run = runs["torch", adapter], runs["jittor", adapter]
    print(f"{adapter} adapter: torch {torch_run.timing}, jittor {jittor_run.timing}")
    assert len(jittor_run.predictions) == N_INPUTS
    assert jittor_run.predictions == torch_run.predictions
    assert jittor_run.file == torch_run.file and jittor_run.lines == torch_run.lines
    assert all(len(item["predict"]) > 0 for item in jittor_run.predictions)


def test_the_adapters_come_from_each_framework_and_change_the_outputs(runs):
    adapters, runs = runs
    assert [load_adapter(adapters[name]).framework for name in ("torch", "jittor")] == ["pytorch", "jittor"]
    for name in adapters:
        assert np.abs(load_adapter(adapters[name]).tensors["h.0.attn.c_attn.lora_B"]).max() > 0
    torch_adapter, jittor_adapter = runs["jittor", "torch"].predictions, runs["jittor", "jittor"].predictions
    differing = sum(a != b for a, b in zip(torch_adapter, jittor_adapter))
    assert differing >= N_INPUTS // 2  # the two adapters' LoRA weights differ, and the outputs show it
    assert len({tuple(item["predict"]) for item in torch_adapter}) > N_INPUTS // 2  # outputs depend on the input
