"""AdamW against a numpy computation of the reference formula, schedules, clipping, resume."""
import math

import numpy as np
import pytest
import torch

from alignment import numpy_reference
from alignment.fixtures import SMALL, lora_weights, random_weights
from lora import set_trainable
from lora_nlg.checkpoints.tensor_files import read_tensors, save_safetensors
from lora_nlg.model.config import LoRAConfig
from lora_nlg.train.schedules import ScheduleError, lr_at
from model import GPT2LMModel
from optim import AdamW, clip_grad_norm

SHAPES = {"w": (4, 3), "b": (3,)}


@pytest.mark.parametrize("correct_bias", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adamw_equals_the_reference_formula_for_three_steps(correct_bias, weight_decay):
    rng = np.random.default_rng(0)
    start = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
    grads = [{n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()} for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]
    params = {n: torch.nn.Parameter(torch.from_numpy(p.copy())) for n, p in start.items()}
    optimizer = AdamW(params.items(), betas=(0.9, 0.98), eps=1e-6, weight_decay=weight_decay,
                      correct_bias=correct_bias)
    for step_grads, lr in zip(grads, lrs):
        for n, p in params.items():
            p.grad = torch.from_numpy(step_grads[n])
        optimizer.step(lr)
    expected = numpy_reference.adamw(start, grads, lrs, 0.9, 0.98, 1e-6, weight_decay, correct_bias)
    assert optimizer.step_count == 3
    for n, p in params.items():
        assert np.abs(p.detach().numpy() - expected[n]).max() <= 1e-6
        assert np.abs(p.detach().numpy() - start[n]).max() > 0.05  # it moved


def _trained_one_step(lora):
    """One forward / backward / AdamW step; returns (weights before, weights after, trainable names)."""
    model = GPT2LMModel(SMALL, lora)
    weights = {**random_weights(), **lora_weights(SMALL, lora, seed=4)}  # nonzero B: A gets a gradient too
    model.load_weights(weights)
    set_trainable(model, lora)
    model.train()
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad], weight_decay=0.0)
    ids = torch.randint(0, SMALL.vocab_size, (2, 12))
    loss, _ = model.loss(model(ids)[0], ids, torch.ones(2, 12), label_smooth=0.1)
    loss.backward()
    optimizer.step(1e-3)
    return weights, model.numpy_weights(), set(optimizer.params)


@pytest.mark.parametrize("lora", [LoRAConfig(r=4, alpha=32, targets="q,v,fc"), LoRAConfig(r=0)])
def test_one_step_changes_exactly_the_trainable_parameters(lora):
    before, after, trainable = _trained_one_step(lora)
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed == trainable
    assert len(trainable) == (len(before) if lora.r == 0 else 2 * 2 * SMALL.n_layer)


def test_step_without_gradient_is_an_error():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(RuntimeError, match="no gradient for trainable parameter.*lonely"):
        AdamW([("lonely", p)]).step(0.1)


def test_frozen_parameter_is_refused():
    with pytest.raises(ValueError, match="frozen parameter.*wte"):
        AdamW([("wte", torch.nn.Parameter(torch.zeros(2), requires_grad=False))])


def test_state_round_trip_resumes_exactly(tmp_path):
    rng = np.random.default_rng(1)
    grads = [{n: torch.from_numpy(rng.normal(size=s).astype(np.float32)) for n, s in SHAPES.items()}
             for _ in range(3)]

    def fresh():
        params = {n: torch.nn.Parameter(torch.ones(s)) for n, s in SHAPES.items()}
        return params, AdamW(params.items(), weight_decay=0.01)

    def run(params, optimizer, steps):
        for step_grads in steps:
            for n, p in params.items():
                p.grad = step_grads[n].clone()
            optimizer.step(0.1)

    straight, opt_straight = fresh()
    run(straight, opt_straight, grads)
    first, opt_first = fresh()
    run(first, opt_first, grads[:2])
    resumed, opt_resumed = fresh()
    with torch.no_grad():
        for n in resumed:
            resumed[n].copy_(first[n])
    save_safetensors(tmp_path / "optimizer.safetensors", opt_first.state_arrays())
    opt_resumed.load_state_arrays(read_tensors(tmp_path / "optimizer.safetensors"))
    run(resumed, opt_resumed, grads[2:])
    assert opt_resumed.step_count == 3
    assert all(torch.equal(straight[n], resumed[n]) for n in SHAPES)
    bad = opt_first.state_arrays()
    bad["exp_avg.w"] = bad["exp_avg.w"][:2]
    with pytest.raises(Exception, match="shape mismatch: exp_avg.w"):
        opt_resumed.load_state_arrays(bad)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_equals_torch(max_norm):
    rng = np.random.default_rng(2)
    grads = [torch.from_numpy(rng.normal(size=s).astype(np.float32)) for s in [(5, 4), (7,), (3, 3)]]
    ours = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = g.clone(), g.clone()
    total = float(clip_grad_norm([p.grad for p in ours], max_norm))  # a 0-d tensor, as torch's
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert total == pytest.approx(expected.item(), rel=1e-6)
    for p, q in zip(ours, theirs):
        assert torch.allclose(p.grad, q.grad, rtol=1e-6, atol=0)
    clipped_norm = math.sqrt(sum((p.grad ** 2).sum().item() for p in ours))
    assert clipped_norm == pytest.approx(min(total, max_norm), rel=1e-5)


def _reference_lambda(schedule, warmup, total):
    """microsoft/LoRA's linear / constant LambdaLR factors (optimizer.py)."""
    def factor(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if schedule == "constant":
            return 1.0
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    return factor


@pytest.mark.parametrize("schedule, warmup", [("linear", 10), ("linear", 0), ("constant", 10), ("constant", 0)])
def test_schedule_equals_lambdalr_as_the_reference_steps_it(schedule, warmup):
    """The reference steps the scheduler after each optimizer step; record the lr each update used."""
    total, lr = 40, 2e-4
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _reference_lambda(schedule, warmup, total))
    used = []
    for _ in range(total + 3):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [lr_at(step, lr, schedule, warmup, total) for step in range(total + 3)]
    assert ours == pytest.approx(used, rel=1e-12, abs=1e-15)


def test_schedule_key_values():
    lr = 2e-4
    assert lr_at(0, lr, "linear", 500, 26000) == 0.0  # the reference's first update uses lr 0
    assert lr_at(250, lr, "linear", 500, 26000) == pytest.approx(lr / 2)
    assert lr_at(500, lr, "linear", 500, 26000) == pytest.approx(lr)
    assert lr_at(13250, lr, "linear", 500, 26000) == pytest.approx(lr / 2)
    assert lr_at(26000, lr, "linear", 500, 26000) == 0.0
    assert lr_at(0, lr, "cosine", 0, 100) == 0.0  # init_lr sets min_lr 0 before the first update
    assert lr_at(1, lr, "cosine", 0, 100) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi / 100)))
    assert lr_at(5, lr, "cosine", 10, 100) == pytest.approx(lr / 2)
    assert lr_at(10, lr, "cosine", 10, 100) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert lr_at(50, lr, "cosine", 10, 100) == pytest.approx(lr / 2)
    assert lr_at(100, lr, "cosine", 10, 100) == pytest.approx(0.0, abs=1e-20)
    assert lr_at(150, lr, "cosine", 10, 100) == pytest.approx(0.0, abs=1e-20)
    assert lr_at(7, lr, "constant", 0, 100) == lr
    with pytest.raises(ScheduleError, match="unknown schedule 'inv_sqrt'"):
        lr_at(0, lr, "inv_sqrt", 0, 10)
