"""--fp16 on CPU in the Jittor tree (its automatic mixed precision, level 5, runs on CPU too): the attention mask
fill, losses against float32, runs through the real CLI, an injected overflow (skipped, logged, scale halved), and
TF32 / --exact (jt.flags.use_tensorcore). The mirror of tests/NLG_pytorch/test_mixed_precision.py.

What differs from torch: no bfloat16 (refused, tests/NLG_jittor/test_train_cli.py), and on CPU no LoRA dropout
under --fp16 (jt.nn.Dropout's float16 kernel does not compile there; refused too), so the runs use
--lora_dropout 0. Jittor's float16 gradients also overflow at the initial scale 65536, so a run starts with a
few skipped updates of its own, each logged. The first run compiles Jittor's float16 CPU kernels (about a minute,
cached after)."""
import contextlib
import math

import numpy as np

import gpt2_ft
from alignment.train_runs import SEED, events, micro_argv
from jittor_env import jt
from lora import set_trainable
from lora_nlg.model.config import LoRAConfig, get_card
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.train.state import load_train_state
from model import MASKED_SCORE, GPT2LMModel, masked_score, set_matmul_precision, softmax
from optim import AdamW

NO_DROPOUT = ("--lora_dropout", "0")


def train(args, engine=gpt2_ft.TrainEngine):
    gpt2_ft.main(engine, args)


def test_the_mask_fill_is_the_references_where_the_dtype_holds_it():
    assert masked_score(jt.zeros(1).dtype) == MASKED_SCORE == -1e10  # a Var's dtype, as the model passes
    assert masked_score(jt.zeros(1).float16().dtype) == -65504.0
    scores = jt.zeros((1, 1, 2, 2)).float16()
    blocked = jt.array([[False, True], [True, True]])  # the second row sees no key at all
    probs = softmax(scores.masked_fill(blocked, masked_score(scores.dtype)).float32())
    assert probs.numpy().tolist() == [[[[1.0, 0.0], [0.5, 0.5]]]]


def test_amp_loss_and_gradients_are_close_to_float32():
    card, lora = get_card("gpt2.tiny"), LoRAConfig(4, 32.0, 0.0)
    model = GPT2LMModel(card, lora)
    model.load_weights({**init_gpt2_weights(card, SEED), **init_lora_weights(card, lora, SEED)})
    set_trainable(model, lora)
    rng = np.random.default_rng(0)
    for layer in model.h:  # a nonzero B, so that lora_A has a gradient to compare too
        b = layer.attn.c_attn.lora_B
        b.update(jt.array(rng.normal(0, 0.02, b.shape).astype(np.float32)))
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad])
    ids = jt.array(rng.integers(0, card.vocab_size, (2, 16)))
    mask = jt.array((rng.random((2, 16)) > 0.3).astype(np.float32))

    def loss_and_grads(amp):
        optimizer.zero_grad()
        scope = jt.flag_scope(auto_mixed_precision_level=gpt2_ft.FP16_AMP_LEVEL) if amp else contextlib.nullcontext()
        with scope:
            loss, _ = model.loss(model(ids)[0], ids, mask, 0.1)
        optimizer.backward(loss)
        return loss.item(), {n: g.float32().numpy() for n, g in optimizer.grads.items()}

    loss32, grads32 = loss_and_grads(False)
    loss, grads = loss_and_grads(True)
    rel = abs(loss - loss32) / loss32
    worst = max(float(np.linalg.norm(grads[n] - g) / np.linalg.norm(g)) for n, g in grads32.items())
    print(f"--fp16: loss {loss:.6f} vs float32 {loss32:.6f}: rel diff {rel:.2e}; LoRA gradients {worst:.2e}")
    assert math.isfinite(loss) and rel < 1e-2
    assert worst < 5e-2


def _check_overflow_events(work_dir):
    """Each overflow event halves the scale it found (the first finds 65536) and has its log line."""
    found = events(work_dir, "overflow")
    lines = (work_dir / "log.txt").read_text().splitlines()
    scale = 65536.0
    for e in found:
        assert (e["previous_scale"], e["scale"]) == (scale, scale / 2)
        assert (f"fp16 overflow at step {e['step']} (epoch {e['epoch']}): non-finite gradients, update skipped; "
                f"loss scale {scale:g} -> {scale / 2:g}") in lines
        scale /= 2
    return found


def test_twenty_amp_steps_through_the_cli_follow_float32(data, tmp_path):
    common = ["--max_step", "20", "--log_interval", "1", "--eval_interval", "20", "--save_interval", "20",
              *NO_DROPOUT]
    train(micro_argv(data, tmp_path / "fp32", *common))
    train(micro_argv(data, tmp_path / "amp", *common, "--fp16"))
    reference, steps = events(tmp_path / "fp32", "train"), events(tmp_path / "amp", "train")
    assert [e["step"] for e in steps] == list(range(1, 21))
    worst = max(abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(steps, reference))
    skipped = _check_overflow_events(tmp_path / "amp")
    print(f"--fp16: 20 steps ({len(skipped)} updates skipped), worst loss rel diff to float32 {worst:.2e}")
    assert all(math.isfinite(e["loss"]) for e in steps) and worst < 1e-2
    assert len(skipped) < 10  # the scale settles, and the later updates are made
    lines = (tmp_path / "amp" / "log.txt").read_text().splitlines()
    assert "precision: float16 autocast, dynamic loss scale 65536; matmul precision: float32" in lines
    assert "note: float16 autocast on CPU is for testing: slower than float32 (the speed-up is CUDA's)" in lines
    (start,) = events(tmp_path / "amp", "start")
    assert start["precision"] == {"autocast": "float16", "matmul": "float32", "loss_scale": 65536.0}


class OverflowAtStep(gpt2_ft.TrainEngine):
    """An engine that puts an inf into one gradient at batch `overflow_at` and records every update:
    (applied, trainable weights before, after, AdamW steps before, after)."""
    overflow_at = 8
    updates = []

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = 0

    def train_batch(self, batch, weight):
        loss = super().train_batch(batch, weight)
        self.calls += 1
        if self.calls == self.overflow_at:
            name = "h.1.attn.c_attn.lora_B"
            grad = self.optimizer.grads[name]
            values = grad.numpy().copy()
            values.flat[5] = np.inf
            self.optimizer.grads[name] = jt.array(values).cast(grad.dtype)
        return loss

    def update(self, lr, clip, loss_scale=None):
        before, steps = self.trainable_arrays(), self.optimizer.step_count
        applied = super().update(lr, clip, loss_scale)
        OverflowAtStep.updates.append((applied, before, self.trainable_arrays(), steps, self.optimizer.step_count))
        return applied


def test_an_overflowed_fp16_update_is_skipped_logged_and_halves_the_scale(data, tmp_path):
    OverflowAtStep.updates = []
    train(micro_argv(data, tmp_path, "--fp16", "--max_step", "10", "--log_interval", "1", "--clip", "1.0",
                     *NO_DROPOUT), engine=OverflowAtStep)
    found = _check_overflow_events(tmp_path)
    applied = [u[0] for u in OverflowAtStep.updates]
    assert [e["step"] for e in found] == [step for step, ok in enumerate(applied, 1) if not ok]
    assert not applied[7] and all(applied[8:])  # the injected one, after the scale had settled
    for ok, before, after, steps_before, steps_after in OverflowAtStep.updates:
        assert steps_after == steps_before + ok  # a skipped update leaves AdamW's step (and moments) alone
        if not ok:
            for name, value in before.items():
                np.testing.assert_array_equal(after[name], value)
    assert [e["step"] for e in events(tmp_path, "train")] == list(range(1, 11))
    state, _ = load_train_state(tmp_path / "train_state.safetensors")
    assert state.loss_scale["scale"] == 65536.0 / 2 ** len(found)


def test_tf32_is_on_for_cuda_unless_exact_and_off_on_cpu():
    saved = jt.flags.use_tensorcore
    try:
        for device, exact, label in [("cuda", False, "tf32"), ("cuda", True, "float32 (exact)"),
                                     ("cpu", False, "float32"), ("cpu", True, "float32")]:
            assert set_matmul_precision(device, exact) == label
            assert jt.flags.use_tensorcore == int(label == "tf32")
    finally:
        jt.flags.use_tensorcore = saved
