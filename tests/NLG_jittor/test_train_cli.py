"""The Jittor gpt2_ft.py end to end on a synthetic dataset: logs, checkpoints, one step, resume, divergence, errors.

The runs use a micro GPT-2 card (vocabulary 512, width 32, 2 layers) registered for this module and
rows of at most 32 tokens (batch widths 8 to 32), so Jittor compiles few kernels and a step takes
milliseconds; everything else is the real command.
"""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import gpt2_ft
from alignment.fault_cases import train_error
from alignment.train_runs import (
    MICRO,
    SEED,
    events,
    micro_argv,
    reference_eval_line,
    reference_train_line,
)
from jittor_env import jt
from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.data.batching import TrainBatches, eval_batches, load_encoded
from lora_nlg.model.config import LoRAConfig
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.train.cli import engine_settings, parse_args
from lora_nlg.train.schedules import lr_at
from lora_nlg.train.state import load_train_state
from model import GPT2LMModel

ROOT = pathlib.Path(__file__).resolve().parents[2]


def train(args, engine=gpt2_ft.TrainEngine):
    gpt2_ft.main(engine, args)


def test_two_epochs_write_reference_logs_jsonl_and_loadable_checkpoints(data, tmp_path):
    train(micro_argv(data, tmp_path, "--max_epoch", "2", "--log_interval", "2", "--eval_interval", "3",
                     "--save_interval", "3"))
    lines = (tmp_path / "log.txt").read_text().splitlines()
    train_events, eval_events = events(tmp_path, "train"), events(tmp_path, "eval")
    # 16 examples / batch 4 = 4 batches per epoch: evals and saves every 3 steps and at each epoch end
    assert [e["step"] for e in train_events] == [2, 4, 6, 8]
    assert [(e["step"], e["epoch"]) for e in eval_events] == [(3, 1), (4, 1), (6, 2), (8, 2)]
    assert [line for line in lines if line.startswith("| epoch")] == [reference_train_line(e) for e in train_events]
    for e in eval_events:
        at = lines.index(reference_eval_line(e))
        assert lines[at - 1] == lines[at + 1] == "-" * 100
    saved = [f"saving checkpoint {tmp_path}/model.{step}.safetensors" for step in (3, 4, 6, 8)]
    assert [line for line in lines if line.startswith("saving checkpoint") and "best" not in line] == saved
    assert lines[-2:] == ["-" * 100, "End of training"]
    assert any(line.startswith("trainable parameters: 1,024 of ") for line in lines)
    (start,) = events(tmp_path, "start")
    assert start["framework"] == "jittor" and start["trainable_params"] == 1024
    examples = load_encoded(data[0])
    real = [b.n_real_tokens for epoch in (1, 2) for b in TrainBatches(examples, 4, 32, SEED).epoch(epoch)]
    for e in train_events:
        assert e["lr"] == lr_at(e["step"] - 1, 0.01, "linear", 2, 8)
        assert e["real_tokens_per_batch"] == np.mean(real[e["step"] - 2:e["step"]])
        assert e["ms_per_batch"] > 0 and np.isfinite(e["loss"])
    best = min(eval_events, key=lambda e: e["valid_loss"])
    assert eval_events[-1]["best_step"] == best["step"] and eval_events[-1]["best_ppl"] == best["valid_ppl"]

    # adapters hold the LoRA tensors of their step; the state holds the latest
    state, groups = load_train_state(tmp_path / "train_state.safetensors")
    assert (state.step, state.epoch, state.batch, state.n_evals, state.framework) == (8, 2, 4, 4, "jittor")
    final = load_adapter(tmp_path / "model.8.safetensors")
    assert (final.step, final.card, final.framework) == (8, "gpt2.micro", "jittor")
    assert final.lora == LoRAConfig(4, 32.0, 0.1)
    assert sorted(final.tensors) == sorted(groups["param"]) and len(final.tensors) == 2 * MICRO.n_layer
    for name, value in final.tensors.items():
        np.testing.assert_array_equal(value, groups["param"][name])
    assert load_adapter(tmp_path / "model.best").step == best["step"]
    assert not np.array_equal(load_adapter(tmp_path / "model.3").tensors["h.0.attn.c_attn.lora_B"],
                              final.tensors["h.0.attn.c_attn.lora_B"])


def test_one_step_changes_only_lora_and_the_checkpoint_reproduces_the_logged_valid_loss(data, tmp_path):
    lr, wd = 0.01, 0.01
    train(micro_argv(data, tmp_path, "--max_step", "1", "--warmup_step", "0", "--lr", str(lr),
                     "--lora_dropout", "0.0"))
    lora = LoRAConfig(4, 32.0, 0.0)
    adapter, init = load_adapter(tmp_path / "model.1"), init_lora_weights(MICRO, lora, SEED)
    for name, value in adapter.tensors.items():
        if name.endswith("lora_B"):  # zero at init, moved by the first update
            assert not init[name].any() and np.abs(value).min() > 0
        else:  # B = 0 gives A no gradient: only the decoupled weight decay of the reference touches it
            np.testing.assert_allclose(value, init[name] * (1 - lr * wd), rtol=1e-6)
    # frozen weights are unchanged: the numpy init plus the adapter reproduce the logged valid loss
    model = GPT2LMModel(MICRO, lora)
    model.load_weights({**init_gpt2_weights(MICRO, SEED), **adapter.tensors})
    model.eval()
    losses = [model.loss(model(jt.array(b.input))[0], jt.array(b.target), jt.array(b.mask))[0].item()
              for b in eval_batches(load_encoded(data[1]), 4, 32)]
    (logged,) = events(tmp_path, "eval")
    assert abs(np.mean(losses) - logged["valid_loss"]) < 1e-6


def micro_engine(data, tmp_path, dropout):
    """(TrainEngine on the micro card's numpy init with LoRA r=4 on q,v, those weights, the run's first batch)."""
    lora = LoRAConfig(4, 32.0, dropout)
    weights = {**init_gpt2_weights(MICRO, SEED), **init_lora_weights(MICRO, lora, SEED)}
    args = parse_args(micro_argv(data, tmp_path, "--lora_dropout", str(dropout)))
    batch = next(TrainBatches(load_encoded(data[0]), 4, 32, SEED).epoch(1))
    return gpt2_ft.TrainEngine(MICRO, lora, weights, engine_settings(args)), weights, batch


def test_engine_updates_trainable_parameters_only(data, tmp_path):
    engine, weights, batch = micro_engine(data, tmp_path, 0.1)
    engine.train_batch(batch, 1.0)
    assert engine.update(0.01, clip=1.0)
    after = engine.model.numpy_weights()
    assert sorted(engine.trainable) == sorted(n for n in weights if n.endswith(("lora_A", "lora_B")))
    for name, value in after.items():
        assert np.array_equal(value, weights[name]) != (name in engine.trainable), name
    assert engine.optimizer.grads == {}  # cleared for the next accumulation


def test_loss_scaled_gradients_are_unscaled_and_an_overflow_skips_the_update(data, tmp_path):
    """The fp16 loss-scale arithmetic of `update`, run here in float32 (so that the steps can be compared exactly)."""
    (plain, _, batch), (scaled, _, _) = micro_engine(data, tmp_path, 0.0), micro_engine(data, tmp_path, 0.0)
    plain.train_batch(batch, 1.0)
    assert plain.update(0.01, clip=1.0)
    scaled.train_batch(batch, 1024.0)  # a power of two: scaling and unscaling are exact
    assert scaled.update(0.01, clip=1.0, loss_scale=1024.0)
    stepped = scaled.trainable_arrays()
    for name, value in plain.trainable_arrays().items():
        np.testing.assert_array_equal(stepped[name], value)
    scaled.train_batch(batch, float("inf"))  # overflowed gradients: the update is skipped and they are dropped
    assert not scaled.update(0.01, clip=1.0, loss_scale=1024.0)
    assert scaled.optimizer.grads == {} and scaled.optimizer.step_count == 1
    for name, value in scaled.trainable_arrays().items():
        np.testing.assert_array_equal(value, stepped[name])


def test_dropout_masks_depend_on_the_seed_only(data, tmp_path):
    """The trainer reseeds before every batch: the same seed gives the same LoRA dropout mask, another seed
    another one (the basis of resuming with dropout on)."""
    engine, _, batch = micro_engine(data, tmp_path, 0.5)
    for layer in engine.model.h:  # a nonzero B, so the dropped LoRA inputs show in the loss
        layer.attn.c_attn.lora_B.update(jt.ones_like(layer.attn.c_attn.lora_B))

    def loss_with_seed(seed):
        engine.seed(seed)
        loss = engine.train_batch(batch, 1.0)
        engine.optimizer.zero_grad()
        return loss
    first, again, other = loss_with_seed(5), loss_with_seed(5), loss_with_seed(6)
    assert first == again and first != other


class KilledAtStep(gpt2_ft.TrainEngine):
    """An engine whose process 'dies' (KeyboardInterrupt) when asked for batch number `kill_at` of the run."""
    kill_at = 8
    calls = 0

    def train_batch(self, batch, weight):
        KilledAtStep.calls += 1
        if KilledAtStep.calls == self.kill_at:
            raise KeyboardInterrupt
        return super().train_batch(batch, weight)


def test_a_killed_and_resumed_run_gives_the_losses_of_an_unbroken_run(data, tmp_path):
    # LoRA dropout on, grad accumulation over 2 batches, 3 epochs of 4 batches; state saved at step 5
    # (mid-epoch, with one batch of gradients accumulated) and the process killed during step 8
    common = ["--max_step", "11", "--grad_acc", "2", "--lora_dropout", "0.1", "--log_interval", "1",
              "--eval_interval", "3", "--save_interval", "5"]
    straight, broken, no_dropout = tmp_path / "straight", tmp_path / "broken", tmp_path / "no_dropout"
    train(micro_argv(data, straight, *common))
    with pytest.raises(SystemExit) as exit_info:
        train(micro_argv(data, broken, *common), engine=KilledAtStep)
    assert exit_info.value.code == 130
    state, groups = load_train_state(broken / "train_state.safetensors")
    assert (state.step, state.epoch, state.batch) == (5, 2, 1) and groups["grad"]  # pending accumulation saved
    train(micro_argv(data, broken, *common, "--resume"))

    for name in ("log.jsonl", "log.txt"):
        assert [e["step"] for e in events(broken, "train", name)] == list(range(1, 12))
    expected = [e["loss"] for e in events(straight, "train")]
    assert [e["loss"] for e in events(broken, "train")] == expected
    assert len(set(expected)) == len(expected)
    assert [e["valid_loss"] for e in events(broken, "eval")] == [e["valid_loss"] for e in events(straight, "eval")]
    for stem in ("model.11", "model.best"):
        a, b = load_adapter(straight / stem), load_adapter(broken / stem)
        assert a.step == b.step
        for name in a.tensors:
            np.testing.assert_array_equal(a.tensors[name], b.tensors[name])
    assert "resuming from step 5 (epoch 2, batch 1)" in (broken / "log.txt").read_text()
    # the dropout that was resumed exactly did act: without it the losses differ once LoRA B is nonzero
    train(micro_argv(data, no_dropout, *[flag if flag != "0.1" else "0.0" for flag in common]))
    undropped = [e["loss"] for e in events(no_dropout, "train")]
    assert undropped[:2] == expected[:2] and undropped[2:] != expected[2:]  # B = 0 until the first update


def test_a_diverging_run_stops_with_one_line_and_leaves_no_corrupt_checkpoint(data, tmp_path, capsys):
    # lr 1e15: the weights after step 1 are huge but finite (saved), step 2's loss is nan
    with pytest.raises(SystemExit) as exit_info:
        train(micro_argv(data, tmp_path, "--lr", "1e15", "--warmup_step", "0", "--save_interval", "1"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: training diverged: non-finite training loss nan at step 2 (epoch 1, batch 2); "
                   "nothing saved after it (last checkpoint: model.1)"]
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["model.1.safetensors", "train_state.safetensors"]
    assert load_train_state(tmp_path / "train_state.safetensors")[0].step == 1
    (diverged,) = events(tmp_path, "diverged")
    assert diverged["step"] == 2 and "step 2" in (tmp_path / "log.txt").read_text().splitlines()[-1]


@pytest.mark.skipif(jt.has_cuda, reason="checks the refusals of a machine without CUDA")
def test_cuda_only_flags_are_one_line_errors_on_cpu(data, tmp_path, capsys):
    # --fp16 itself runs on CPU (tests/NLG_jittor/test_mixed_precision.py), but not with LoRA dropout
    assert train_error(micro_argv(data, tmp_path / "a", "--fp16"), capsys) == (
        "error: --fp16 on CPU: Jittor's float16 CPU kernels do not compile LoRA dropout (--lora_dropout 0.1); "
        "add --lora_dropout 0, or run on CUDA")
    assert "--bf16: Jittor's automatic mixed precision computes in float16 only" in train_error(
        micro_argv(data, tmp_path / "a", "--bf16"), capsys)
    assert "--device cuda: Jittor sees no CUDA device" in train_error(
        micro_argv(data, tmp_path / "b", "--device", "cuda"), capsys)


def test_bad_input_is_a_one_line_error(data, tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    assert "empty.jsonl: no examples" in train_error(micro_argv((tmp_path / "empty.jsonl", data[1]), tmp_path / "a"),
                                                    capsys)
    assert "train_state.safetensors: no training state to resume" in train_error(
        micro_argv(data, tmp_path / "c", "--resume"), capsys)
    train(micro_argv(data, tmp_path / "e", "--max_step", "1"))
    assert "cannot resume with different settings: lr 0.01 -> 0.02" in train_error(
        micro_argv(data, tmp_path / "e", "--max_step", "1", "--resume", "--lr", "0.02"), capsys)


def test_the_script_reports_a_missing_file_in_one_line(data, tmp_path):
    missing = tmp_path / "missing.jsonl"
    args = micro_argv((missing, data[1]), tmp_path / "run", card="gpt2.tiny")  # no micro card in a fresh process
    result = subprocess.run([sys.executable, "src/gpt2_ft.py", *args], cwd=ROOT / "NLG_jittor",
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"error: {missing}: cannot read (No such file or directory)\n"
