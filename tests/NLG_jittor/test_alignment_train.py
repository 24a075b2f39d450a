"""Jittor's gpt2_ft.py against PyTorch's on the E2E sample: the same 50 training steps, and adapters trained by
one framework used by the other.

Both trees run their real CLI on the same prepared data (data/prepare.py on the shared mirror), card
gpt2.tiny (the real 50257-token vocabulary), the same numpy init and the same batches: PyTorch in three
.venv-torch subprocesses (the frameworks never share a process), meanwhile Jittor's three, one after another.
Each run is its own process, as users run them: run inside this test process with the whole Jittor suite
collected, a Jittor training aborted on glibc heap corruption in 2 of 3 tries (cause not found; as its own
process it never has).
The comparison reads what the runs wrote: log.jsonl (a train line per step) and the adapters.
"""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from alignment.torch_side import run_torch_script
from alignment.train_runs import events, finish, logits_batch, start_ft
from jittor_env import jt
from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.util.jsonl import read_jsonl, write_jsonl
from model import GPT2LMModel
from testpaths import MIRROR

ROOT = pathlib.Path(__file__).resolve().parents[2]
TORCH_SCRIPT = "torch_train_reference.py"  # in tests/alignment
STEPS, SEED, SEQ_LEN, VALID_ROWS, LOGIT_ROWS = 50, 110, 64, 16, 4
# lr 2e-3 after 5 warm-up steps moves the loss of the random init visibly within 50 steps
FLAGS = ["--model_card", "gpt2.tiny", "--train_batch_size", "4", "--valid_batch_size", "8", "--seq_len", str(SEQ_LEN),
         "--max_step", str(STEPS), "--lr", "0.002", "--warmup_step", "5", "--log_interval", "1",
         "--eval_interval", str(STEPS), "--save_interval", str(STEPS), "--random_seed", str(SEED)]
# the paper's LoRA (q, v) without and with dropout, and the SQuAD project's (r=8, alpha 16 on attention + MLP)
VARIANTS = {"qv": ["--lora_dropout", "0.0"], "qv_dropout": ["--lora_dropout", "0.1"],
            "attn_mlp_r8": ["--lora_targets", "attn,mlp", "--lora_dim", "8", "--lora_alpha", "16",
                            "--lora_dropout", "0.0"]}
DETERMINISTIC = ("qv", "attn_mlp_r8")


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """The E2E sample as data/prepare.py writes it, and its first VALID_ROWS validation examples."""
    out = tmp_path_factory.mktemp("e2e")
    subprocess.run([sys.executable, str(ROOT / "data" / "prepare.py"), "--dataset", "e2e", "--source", str(MIRROR),
                    "--out", str(out / "data"), "--vocab-dir", str(out / "vocab")], check=True, capture_output=True)
    write_jsonl(out / "valid_head.jsonl", [item for _, item in read_jsonl(out / "data" / "valid.jsonl")][:VALID_ROWS])
    return out / "data" / "train.jsonl", out / "valid_head.jsonl"


@pytest.fixture(scope="module")
def runs(e2e, tmp_path_factory):
    """{(framework, variant): work dir} of the six 50-step runs; the torch ones run while Jittor's do."""
    out = tmp_path_factory.mktemp("runs")
    dirs = {(fw, v): out / f"{fw}_{v}" for fw in ("pytorch", "jittor") for v in VARIANTS}

    def argv(framework, variant):
        return ["--train_data", e2e[0], "--valid_data", e2e[1], "--work_dir", dirs[framework, variant],
                *VARIANTS[variant], *FLAGS]
    torch_runs = [start_ft("pytorch", argv("pytorch", v)) for v in VARIANTS]
    try:
        for v in VARIANTS:
            finish(start_ft("jittor", argv("jittor", v)))
        for process in torch_runs:
            finish(process)
    finally:  # SIGTERM: Jittor ends this whole process when a child dies of any other signal
        for process in torch_runs:
            if process.poll() is None:
                process.terminate()
                process.wait()
    return dirs


def _losses(work_dir):
    train = events(work_dir, "train")
    assert [e["step"] for e in train] == list(range(1, STEPS + 1))
    return np.array([e["loss"] for e in train])


def _rel(got, expected):
    """max |got - expected| / max |expected|: one number per tensor, scale-free."""
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("variant", DETERMINISTIC)
def test_without_dropout_every_step_has_the_same_loss(runs, variant):
    torch_loss, jittor_loss = _losses(runs["pytorch", variant]), _losses(runs["jittor", variant])
    diff = np.abs(jittor_loss - torch_loss)
    print(f"50 steps, {variant}, dropout 0: max |loss diff| {diff.max():.2e} (step {diff.argmax() + 1}), "
          f"loss {torch_loss[:5].mean():.3f} -> {torch_loss[-5:].mean():.3f}")
    assert torch_loss[:5].mean() - torch_loss[-5:].mean() > 0.2  # training moved the loss
    assert diff.max() <= 1e-3
    (torch_eval,), (jittor_eval,) = events(runs["pytorch", variant], "eval"), events(runs["jittor", variant], "eval")
    assert torch_eval["step"] == jittor_eval["step"] == STEPS
    assert abs(torch_eval["valid_loss"] - jittor_eval["valid_loss"]) <= 1e-3


@pytest.mark.parametrize("variant", DETERMINISTIC)
def test_without_dropout_the_trained_lora_weights_agree(runs, variant):
    torch_adapter = load_adapter(runs["pytorch", variant] / f"model.{STEPS}")
    jittor_adapter = load_adapter(runs["jittor", variant] / f"model.{STEPS}")
    assert (torch_adapter.framework, jittor_adapter.framework) == ("pytorch", "jittor")
    assert sorted(torch_adapter.tensors) == sorted(jittor_adapter.tensors)
    # q,v: A and B of the fused qkv in 4 layers; attention + MLP: also c_proj, c_fc and the MLP's c_proj
    assert len(torch_adapter.tensors) == {"qv": 8, "attn_mlp_r8": 32}[variant]
    rel = {name: _rel(jittor_adapter.tensors[name], value) for name, value in torch_adapter.tensors.items()}
    worst = max(rel, key=rel.get)
    print(f"{variant} after {STEPS} steps: {len(rel)} LoRA tensors, worst rel diff {rel[worst]:.2e} ({worst})")
    assert all(np.abs(value).max() > 0 for value in torch_adapter.tensors.values())  # B moved from zero
    assert rel[worst] <= 1e-3


def test_with_dropout_the_losses_agree_on_average(runs):
    """Dropout masks come from each framework's own RNG, so single steps differ; the last 20 steps' mean may not."""
    torch_loss, jittor_loss = _losses(runs["pytorch", "qv_dropout"]), _losses(runs["jittor", "qv_dropout"])
    torch_tail, jittor_tail = torch_loss[-20:].mean(), jittor_loss[-20:].mean()
    print(f"50 steps, dropout 0.1: last-20 mean loss torch {torch_tail:.4f}, jittor {jittor_tail:.4f} "
          f"({100 * abs(jittor_tail / torch_tail - 1):.2f}% apart); max single-step diff "
          f"{np.abs(jittor_loss - torch_loss).max():.3f}")
    assert abs(jittor_tail / torch_tail - 1) <= 0.02
    for framework in ("pytorch", "jittor"):  # dropout acted: the losses left the dropout-0 run's
        moved = np.abs(_losses(runs[framework, "qv_dropout"]) - _losses(runs[framework, "qv"])).max()
        print(f"{framework}: dropout 0.1 vs 0 max single-step loss diff {moved:.3f}")
        assert moved > 1e-3


def _jittor_logits_and_weights(stem, batch):
    adapter = load_adapter(stem)
    model = GPT2LMModel(adapter.config, adapter.lora)
    model.load_weights({**init_gpt2_weights(adapter.config, SEED), **adapter.tensors})
    model.eval()
    with jt.no_grad():
        logits = model.logits(model(jt.array(batch.input))[0]).numpy()
    return adapter, model.numpy_weights(list(adapter.tensors)), logits


def test_adapters_trained_by_either_framework_load_in_the_other(runs, e2e, tmp_path):
    """torch's trained adapter in Jittor, Jittor's in torch: the same tensors in the model, the same logits."""
    stems = [runs[fw, "qv_dropout"] / f"model.{STEPS}" for fw in ("pytorch", "jittor")]
    run_torch_script(TORCH_SCRIPT, *stems, "--valid", e2e[1], "--out", tmp_path / "torch.npz", "--seed", SEED,
                     "--rows", LOGIT_ROWS, "--seq_len", SEQ_LEN)
    torch_side = np.load(tmp_path / "torch.npz")
    batch = logits_batch(e2e[1], LOGIT_ROWS, SEQ_LEN)
    for i, stem in enumerate(stems):
        adapter, weights, logits = _jittor_logits_and_weights(stem, batch)
        for name, value in adapter.tensors.items():
            np.testing.assert_array_equal(weights[name], value)
            np.testing.assert_array_equal(torch_side[f"weights.{i}.{name}"], value)
        diff = float(np.abs(logits - torch_side[f"logits.{i}"]).max())
        print(f"adapter trained by {adapter.framework}: logits max abs diff jittor vs torch {diff:.2e}")
        assert diff <= 1e-4
        assert np.abs(logits).max() > 1.0  # logits of real size, not all ~0
