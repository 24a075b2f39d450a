"""The Jittor LoRA layer (loralib layout), merge / unmerge, dropout and seeding, trainable marking, gradients."""
import io

import numpy as np
import pytest

from alignment import numpy_reference as ref
from alignment.fixtures import SMALL, lora_weights, random_weights, token_ids
from jittor_env import jt
from lora import LoRAConv1D, is_lora_name, merge_lora, report_trainable, set_trainable, unmerge_lora
from lora_nlg.model.config import LoRAConfig, count_trainable, get_card, lora_shapes
from model import GPT2LMModel
from optim import AdamW

ALL_TARGETS = LoRAConfig(r=4, alpha=32, targets="attn,mlp")


def lora_state_dict(model):
    """Name -> parameter of the LoRA tensors (canonical names, as an adapter file stores them)."""
    return {name: param for name, param in model.named_parameters() if is_lora_name(name)}


def _random_layer(enabled, r=3, n_in=8, n_out=12, dropout=0.0):
    layer = LoRAConv1D(n_in, n_out, LoRAConfig(r=r, alpha=6.0, dropout=dropout), enabled=enabled)
    rng = np.random.default_rng(0)
    for _, p in layer.named_parameters():
        p.update(jt.array(rng.normal(size=tuple(p.shape)).astype(np.float32)))
    return layer


def _numpy(layer):
    return {n: p.numpy().astype(np.float64) for n, p in layer.named_parameters()}


@pytest.mark.parametrize("enabled", [(True, False, True), (False, True, False), (True, True, True), (True,)])
def test_layer_equals_loralib_grouped_formula(enabled):
    layer = _random_layer(enabled)
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype(np.float32)
    w = _numpy(layer)
    expected = x @ w["weight"] + w["bias"] + ref.grouped_lora_update(x, w["lora_A"], w["lora_B"], enabled, 12, 6.0 / 3)
    assert np.abs(layer(jt.array(x)).numpy() - expected).max() <= 1e-5


def test_layer_without_lora_has_no_lora_parameters():
    no_slot = LoRAConv1D(8, 12, LoRAConfig(r=4), enabled=(False, False, False))
    assert [n for n, _ in no_slot.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in LoRAConv1D(8, 12, LoRAConfig(r=0), enabled=(True,)).named_parameters()] == ["weight", "bias"]


def test_merge_equals_unmerged_and_unmerge_restores():
    layer = _random_layer((True, False, True))
    x = jt.array(np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32))
    before, weight = layer(x).numpy(), layer.weight.numpy().copy()
    layer.merge()
    assert layer.merged and np.abs(layer(x).numpy() - before).max() <= 1e-5
    assert np.abs(layer.weight.numpy() - weight).max() > 0.1  # the update really went into the weight
    layer.unmerge()
    assert np.abs(layer.weight.numpy() - weight).max() <= 1e-6
    assert np.abs(layer(x).numpy() - before).max() <= 1e-6


def _gpt2(lora, b_std):
    model = GPT2LMModel(SMALL, lora).eval()
    model.load_weights({**random_weights(), **lora_weights(SMALL, lora, seed=2, b_std=b_std)})
    return model


def _logits(model, ids):
    with jt.no_grad():
        return model.logits(model(ids)[0]).numpy()


def test_zero_b_leaves_the_base_model_unchanged():
    ids = jt.array(token_ids((2, 10)))
    base = GPT2LMModel(SMALL).eval()
    base.load_weights(random_weights())
    assert np.abs(_logits(_gpt2(ALL_TARGETS, b_std=0.0), ids) - _logits(base, ids)).max() <= 1e-5
    assert np.abs(_logits(_gpt2(ALL_TARGETS, b_std=0.05), ids) - _logits(base, ids)).max() > 1e-3


def test_merged_model_equals_unmerged_model():
    model = _gpt2(ALL_TARGETS, b_std=0.05)
    ids = jt.array(token_ids((2, 10)))
    unmerged = _logits(model, ids)
    merge_lora(model)
    assert np.abs(_logits(model, ids) - unmerged).max() <= 1e-5
    unmerge_lora(model)
    assert np.abs(_logits(model, ids) - unmerged).max() <= 1e-5


def test_dropout_only_on_the_lora_branch_only_in_training_and_seeded():
    """A new model trains (LoRA dropout on, as in torch, although jt.nn.Dropout starts off); Jittor seeds its
    generator from the clock, so dropout masks repeat only under jt.set_global_seed."""
    lora = LoRAConfig(r=4, alpha=32, dropout=0.5, targets="q,v")
    ids = jt.array(token_ids((2, 10)))
    model = _gpt2(lora, b_std=0.0).train()
    # B = 0: dropout is invisible (up to float rounding: Jittor fuses the graph with dropout differently)
    assert np.abs(_logits(model, ids) - _logits(_gpt2(lora, b_std=0.0), ids)).max() <= 1e-5
    model = GPT2LMModel(SMALL, lora)
    model.load_weights({**random_weights(), **lora_weights(SMALL, lora, seed=2)})
    first, second = _logits(model, ids), _logits(model, ids)
    assert not np.array_equal(first, second)
    jt.set_global_seed(5)
    seeded = _logits(model, ids)
    jt.set_global_seed(5)
    assert np.array_equal(_logits(model, ids), seeded)
    model.eval()
    assert np.array_equal(_logits(model, ids), _logits(model, ids))


def test_set_trainable_and_lora_state():
    model = GPT2LMModel(SMALL, ALL_TARGETS)
    set_trainable(model, ALL_TARGETS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_shapes(SMALL, ALL_TARGETS)) == set(lora_state_dict(model))
    full = GPT2LMModel(SMALL)
    set_trainable(full, LoRAConfig(r=0))
    assert all(p.requires_grad for p in full.parameters()) and lora_state_dict(full) == {}


def _lora_gradients(b_std):
    model = _gpt2(ALL_TARGETS, b_std=b_std)
    set_trainable(model, ALL_TARGETS)
    optimizer = AdamW(lora_state_dict(model).items())
    ids = jt.array(token_ids((2, 10), seed=3))
    loss, _ = model.loss(model(ids)[0], ids, jt.ones(2, 10))
    optimizer.backward(loss)
    return {name: np.abs(g.numpy()).sum() for name, g in optimizer.grads.items()}


def test_first_backward_reaches_every_lora_b():
    """With B = 0 only B gets a gradient on the first step (A's gradient is B^T ... = 0). A B the loss does
    not reach would get zeros from Jittor, not an error, and never train (the prior Jittor port's bug)."""
    grads = _lora_gradients(b_std=0.0)
    assert set(grads) == set(lora_shapes(SMALL, ALL_TARGETS))
    for name, total in grads.items():
        assert (total > 0) == name.endswith("lora_B"), name


def test_every_lora_tensor_gets_a_gradient_once_b_is_nonzero():
    assert all(total > 0 for total in _lora_gradients(b_std=0.05).values())


@pytest.mark.parametrize("card", ["gpt2.sm", "gpt2.md", "gpt2.lg"])
def test_trainable_counts_of_the_real_models(card):
    config, lora = get_card(card), LoRAConfig(r=4, alpha=32, targets="q,v")
    model = GPT2LMModel(config, lora)  # jt.zeros parameters are lazy: nothing is allocated
    set_trainable(model, lora)
    out = io.StringIO()
    count = report_trainable(model, config, lora, file=out)
    print(card, out.getvalue().strip())
    assert count == count_trainable(config, lora) == {"gpt2.sm": 147_456, "gpt2.md": 393_216,
                                                      "gpt2.lg": 737_280}[card]
    assert out.getvalue().startswith(f"trainable parameters: {count:,} of ")


def test_report_trainable_catches_a_wrong_marking():
    model = GPT2LMModel(SMALL, ALL_TARGETS)
    set_trainable(model, LoRAConfig(r=0))  # everything trains, but the config says LoRA
    with pytest.raises(RuntimeError, match="trainable parameters"):
        report_trainable(model, SMALL, ALL_TARGETS, file=io.StringIO())
