"""The Jittor AdamW and gradient clipping against numpy computations of the reference formulas; one training step."""
import numpy as np
import pytest

from alignment import numpy_reference as ref
from alignment.fixtures import SMALL, lora_weights, random_weights, token_ids
from jittor_env import jt
from lora import set_trainable
from lora_nlg.checkpoints.tensor_files import read_tensors, save_safetensors
from lora_nlg.model.config import LoRAConfig
from model import GPT2LMModel
from optim import AdamW, clip_grad_norm

SHAPES = {"w": (4, 3), "b": (3,)}


def _set_grads(optimizer, grads):
    optimizer.grads = {n: jt.array(g) for n, g in grads.items()}


@pytest.mark.parametrize("correct_bias", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adamw_equals_the_reference_formula_for_three_steps(correct_bias, weight_decay):
    rng = np.random.default_rng(0)
    start = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
    grads = [{n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()} for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]
    params = {n: jt.array(p) for n, p in start.items()}
    optimizer = AdamW(params.items(), betas=(0.9, 0.98), eps=1e-6, weight_decay=weight_decay,
                      correct_bias=correct_bias)
    for step_grads, lr in zip(grads, lrs):
        _set_grads(optimizer, step_grads)
        optimizer.step(lr)
    expected = ref.adamw(start, grads, lrs, 0.9, 0.98, 1e-6, weight_decay, correct_bias)
    assert optimizer.step_count == 3
    for n, p in params.items():
        assert np.abs(p.numpy() - expected[n]).max() <= 1e-6
        assert np.abs(p.numpy() - start[n]).max() > 0.05  # it moved
        assert p.requires_grad  # Var.update kept it trainable


def _trained_one_step(lora):
    """One forward / backward / AdamW step; returns (weights before, after, trainable names, gradient sums)."""
    model = GPT2LMModel(SMALL, lora)
    weights = {**random_weights(), **lora_weights(SMALL, lora, seed=4)}  # nonzero B: A gets a gradient too
    model.load_weights(weights)
    set_trainable(model, lora)
    model.train()
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad], weight_decay=0.0)
    ids = jt.array(token_ids((2, 12), seed=6))
    loss, _ = model.loss(model(ids)[0], ids, jt.ones(2, 12), label_smooth=0.1)
    optimizer.backward(loss)
    grad_sums = {n: float(np.abs(g.numpy()).sum()) for n, g in optimizer.grads.items()}
    optimizer.step(1e-3)
    return weights, model.numpy_weights(), set(optimizer.params), grad_sums


@pytest.mark.parametrize("lora", [LoRAConfig(r=4, alpha=32, targets="q,v,fc"), LoRAConfig(r=0)])
def test_one_step_changes_exactly_the_trainable_parameters(lora):
    before, after, trainable, grad_sums = _trained_one_step(lora)
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed == trainable
    assert len(trainable) == (len(before) if lora.r == 0 else 2 * 2 * SMALL.n_layer)
    assert all(total > 0 for total in grad_sums.values())


def test_backward_accumulates_until_zero_grad():
    """Two backward calls (gradient accumulation) give the gradient of the summed losses; the loss is
    still readable after its graph is freed."""
    p = jt.array(np.array([1.0, -2.0, 3.0], np.float32))
    optimizer = AdamW([("p", p)])
    first, second = (p * p).sum(), (p * 3.0).sum()
    optimizer.backward(first)
    optimizer.backward(second)
    assert first.item() == 14.0 and second.item() == 6.0
    np.testing.assert_allclose(optimizer.grads["p"].numpy(), [5.0, -1.0, 9.0])
    optimizer.zero_grad()
    optimizer.backward((p * 3.0).sum())  # a new graph: backward freed the old one
    np.testing.assert_allclose(optimizer.grads["p"].numpy(), [3.0, 3.0, 3.0])


def test_step_without_gradient_is_an_error():
    with pytest.raises(RuntimeError, match="no gradient for trainable parameter.*lonely"):
        AdamW([("lonely", jt.zeros(2))]).step(0.1)


def test_frozen_parameter_is_refused():
    with pytest.raises(ValueError, match="frozen parameter.*wte"):
        AdamW([("wte", jt.zeros(2).stop_grad())])


def test_state_round_trip_resumes_exactly(tmp_path):
    rng = np.random.default_rng(1)
    grads = [{n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()} for _ in range(3)]

    def fresh():
        params = {n: jt.ones(s) for n, s in SHAPES.items()}
        return params, AdamW(params.items(), weight_decay=0.01)

    def run(params, optimizer, steps):
        for step_grads in steps:
            _set_grads(optimizer, step_grads)
            optimizer.step(0.1)

    straight, opt_straight = fresh()
    run(straight, opt_straight, grads)
    first, opt_first = fresh()
    run(first, opt_first, grads[:2])
    resumed, opt_resumed = fresh()
    for n in resumed:
        resumed[n].update(jt.array(first[n].numpy()))
    save_safetensors(tmp_path / "optimizer.safetensors", opt_first.state_arrays())
    opt_resumed.load_state_arrays(read_tensors(tmp_path / "optimizer.safetensors"))
    run(resumed, opt_resumed, grads[2:])
    assert opt_resumed.step_count == 3
    assert all(np.array_equal(straight[n].numpy(), resumed[n].numpy()) for n in SHAPES)
    bad = opt_first.state_arrays()
    bad["exp_avg.w"] = bad["exp_avg.w"][:2]
    with pytest.raises(Exception, match="shape mismatch: exp_avg.w"):
        opt_resumed.load_state_arrays(bad)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_equals_the_reference(max_norm):
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=s).astype(np.float32) for s in [(5, 4), (7,), (3, 3)]]
    ours = [jt.array(g) for g in grads]
    total = float(clip_grad_norm(ours, max_norm))  # a 0-d Var, as torch's tensor
    expected_total, expected = ref.clip_by_global_norm(grads, max_norm)
    assert total == pytest.approx(expected_total, rel=1e-6)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
        assert got.dtype == "float32"
    clipped_norm = np.sqrt(sum(float((g.numpy().astype(np.float64) ** 2).sum()) for g in ours))
    assert clipped_norm == pytest.approx(min(total, max_norm), rel=1e-5)
    assert float(clip_grad_norm([], max_norm)) == 0.0
