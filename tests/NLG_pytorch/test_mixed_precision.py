"""--fp16 / --bf16 on CPU (torch autocasts both there): the attention mask fill, losses against float32, runs
through the real CLI, an injected fp16 overflow (skipped, logged, scale halved), and TF32 / --exact.

Float16 matmuls on CPU are slow (the tiny card's 50257-word head takes seconds), so the CLI runs use the micro
card; the loss comparison uses gpt2.tiny on one short batch."""
import math

import numpy as np
import pytest
import torch

import gpt2_ft
from alignment.fault_cases import train_error
from alignment.train_runs import SEED, events, micro_argv
from lora_nlg.model.config import LoRAConfig, get_card
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.train.state import load_train_state
from model import MASKED_SCORE, GPT2LMModel, masked_score, set_matmul_precision

AUTOCAST = {"--fp16": torch.float16, "--bf16": torch.bfloat16}


pytestmark = pytest.mark.usefixtures("one_thread")  # (the micro card: conftest.py)


def train(args, engine=gpt2_ft.TrainEngine):
    gpt2_ft.main(engine, args)


def test_the_mask_fill_is_the_references_where_the_dtype_holds_it():
    assert masked_score(torch.float32) == masked_score(torch.bfloat16) == MASKED_SCORE == -1e10
    assert masked_score(torch.float16) == -65504.0  # -1e10 overflows float16: masked_fill refused it
    scores = torch.zeros(1, 1, 2, 2, dtype=torch.float16)
    blocked = torch.tensor([[False, True], [True, True]])  # the second row sees no key at all
    probs = torch.softmax(scores.masked_fill(blocked, masked_score(scores.dtype)).float(), dim=-1)
    assert probs.tolist() == [[[[1.0, 0.0], [0.5, 0.5]]]]  # finite: -inf would make the second row nan


@pytest.mark.parametrize("flag", list(AUTOCAST))
def test_autocast_loss_and_gradients_are_close_to_float32(flag):
    card, lora = get_card("gpt2.tiny"), LoRAConfig(4, 32.0, 0.0)
    model = GPT2LMModel(card, lora)
    model.load_weights({**init_gpt2_weights(card, SEED), **init_lora_weights(card, lora, SEED)})
    torch.manual_seed(0)
    for layer in model.h:  # a nonzero B, so that lora_A has a gradient to compare too
        torch.nn.init.normal_(layer.attn.c_attn.lora_B, std=0.02)
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(0, card.vocab_size, (2, 16)))
    mask = torch.from_numpy((rng.random((2, 16)) > 0.3).astype(np.float32))

    def loss_and_grads(dtype):
        model.zero_grad()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss, _ = model.loss(model(ids)[0], ids, mask, 0.1)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if "lora" in n}

    loss32, grads32 = loss_and_grads(None)
    loss, grads = loss_and_grads(AUTOCAST[flag])
    rel = abs(loss - loss32) / loss32
    worst = max(float((grads[n] - g).norm() / g.norm()) for n, g in grads32.items())
    print(f"{flag}: loss {loss:.6f} vs float32 {loss32:.6f}: rel diff {rel:.2e}; LoRA gradients {worst:.2e}")
    assert math.isfinite(loss) and rel < 1e-2
    assert worst < 5e-2


@pytest.mark.parametrize("flag", list(AUTOCAST))
def test_twenty_autocast_steps_through_the_cli_follow_float32(data, tmp_path, flag):
    common = ["--max_step", "20", "--log_interval", "1", "--eval_interval", "20", "--save_interval", "20"]
    train(micro_argv(data, tmp_path / "fp32", *common))
    train(micro_argv(data, tmp_path / "amp", *common, flag))
    reference, steps = events(tmp_path / "fp32", "train"), events(tmp_path / "amp", "train")
    assert [e["step"] for e in steps] == list(range(1, 21))
    worst = max(abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(steps, reference))
    print(f"{flag}: 20 steps, worst loss rel diff to float32 {worst:.2e}")
    assert all(math.isfinite(e["loss"]) for e in steps) and worst < 1e-2
    lines = (tmp_path / "amp" / "log.txt").read_text().splitlines()
    dtype = "float16" if flag == "--fp16" else "bfloat16"
    scale = ", dynamic loss scale 65536" if flag == "--fp16" else ""
    assert f"precision: {dtype} autocast{scale}; matmul precision: float32" in lines
    assert f"note: {dtype} autocast on CPU is for testing: slower than float32 (the speed-up is CUDA's)" in lines
    assert "precision: float32; matmul precision: float32" in (tmp_path / "fp32" / "log.txt").read_text()
    (start,) = events(tmp_path / "amp", "start")
    assert start["precision"] == {"autocast": dtype, "matmul": "float32",
                                  "loss_scale": 65536.0 if flag == "--fp16" else None}


class OverflowAtStep(gpt2_ft.TrainEngine):
    """An engine that puts an inf into one gradient at batch `overflow_at` and records every update:
    (applied, trainable weights before, after, AdamW steps before, after)."""
    overflow_at = 3
    updates = []

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = 0

    def train_batch(self, batch, weight):
        loss = super().train_batch(batch, weight)
        self.calls += 1
        if self.calls == self.overflow_at:
            self.trainable["h.1.attn.c_attn.lora_B"].grad.view(-1)[5] = float("inf")
        return loss

    def update(self, lr, clip, loss_scale=None):
        before, steps = self.trainable_arrays(), self.optimizer.step_count
        applied = super().update(lr, clip, loss_scale)
        OverflowAtStep.updates.append((applied, before, self.trainable_arrays(), steps, self.optimizer.step_count))
        return applied


def test_an_overflowed_fp16_update_is_skipped_logged_and_halves_the_scale(data, tmp_path):
    OverflowAtStep.updates = []
    train(micro_argv(data, tmp_path, "--fp16", "--max_step", "6", "--log_interval", "1", "--clip", "1.0"),
          engine=OverflowAtStep)
    assert [u[0] for u in OverflowAtStep.updates] == [True, True, False, True, True, True]
    applied, before, after, steps_before, steps_after = OverflowAtStep.updates[2]
    assert steps_after == steps_before == 2  # AdamW did not step (its moments and bias correction stay put)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)
    assert all(not np.array_equal(u[1]["h.1.attn.c_attn.lora_B"], u[2]["h.1.attn.c_attn.lora_B"])
               for u in OverflowAtStep.updates[1:] if u[0])  # (step 1's rate is 0: the warm-up starts there)
    (overflow,) = events(tmp_path, "overflow")
    assert overflow == {"type": "overflow", "previous_scale": 65536.0, "scale": 32768.0, "step": 3, "epoch": 1}
    assert ("fp16 overflow at step 3 (epoch 1): non-finite gradients, update skipped; loss scale 65536 -> 32768"
            in (tmp_path / "log.txt").read_text().splitlines())
    assert [e["step"] for e in events(tmp_path, "train")] == list(range(1, 7))
    state, _ = load_train_state(tmp_path / "train_state.safetensors")
    assert state.loss_scale["scale"] == 32768.0 and state.loss_scale["clean_updates"] == 3


def test_bf16_on_a_gpu_without_bfloat16_is_a_one_line_error(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpt2_ft, "pick_device", lambda name, ranks: torch.device("cuda"))  # the refusal comes first
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    assert train_error(micro_argv(data, tmp_path, "--bf16"), capsys) == (
        "error: --bf16: Tesla V100-SXM2-16GB has no bfloat16 arithmetic (compute capability 8.0 or later); "
        "use --fp16")


def test_tf32_is_on_for_cuda_unless_exact_and_off_on_cpu():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for device, exact, label in [("cuda", False, "tf32"), ("cuda", True, "float32 (exact)"),
                                     ("cpu", False, "float32"), ("cpu", True, "float32")]:
            assert set_matmul_precision(torch.device(device), exact) == label
            assert torch.backends.cuda.matmul.allow_tf32 is torch.backends.cudnn.allow_tf32 is (label == "tf32")
        assert torch.get_float32_matmul_precision() == "highest"  # what allow_tf32 = False reads as
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
