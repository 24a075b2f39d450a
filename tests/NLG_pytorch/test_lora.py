"""The LoRA layer (loralib layout), merge / unmerge, trainable marking and counts."""
import io

import pytest
import torch
import torch.nn.functional as F

from alignment.fixtures import SMALL, lora_weights, random_weights
from lora import LoRAConv1D, is_lora_name, merge_lora, report_trainable, set_trainable, unmerge_lora
from lora_nlg.model.config import LoRAConfig, count_trainable, get_card, lora_shapes
from model import GPT2LMModel

ALL_TARGETS = LoRAConfig(r=4, alpha=32, targets="attn,mlp")


def lora_state_dict(model):
    """Name -> parameter of the LoRA tensors (canonical names, as an adapter file stores them)."""
    return {name: param for name, param in model.named_parameters() if is_lora_name(name)}


def _random_layer(enabled, r=3, n_in=8, n_out=12, dropout=0.0):
    torch.manual_seed(0)
    layer = LoRAConv1D(n_in, n_out, LoRAConfig(r=r, alpha=6.0, dropout=dropout), enabled=enabled)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


@pytest.mark.parametrize("enabled", [(True, False, True), (False, True, False), (True, True, True), (True,)])
def test_layer_equals_loralib_grouped_formula(enabled):
    """loralib MergedLinear computes the update with a grouped conv1d (group j: A block j, B block j) and
    scatters the groups into the enabled output slices; the layer must compute the same."""
    layer = _random_layer(enabled)
    x = torch.randn(2, 5, 8)
    after_a = F.linear(x, layer.lora_A)
    after_b = F.conv1d(after_a.transpose(-2, -1), layer.lora_B.unsqueeze(-1), groups=sum(enabled)).transpose(-2, -1)
    slice_size = 12 // len(enabled)
    update = torch.zeros(2, 5, 12)
    slots = [i for i, on in enumerate(enabled) if on]
    for j, slot in enumerate(slots):
        update[..., slot * slice_size:(slot + 1) * slice_size] = after_b[..., j * slice_size:(j + 1) * slice_size]
    expected = x @ layer.weight + layer.bias + update * (6.0 / 3)
    assert (layer(x) - expected).abs().max().item() <= 1e-5


def test_layer_without_lora_has_no_lora_parameters():
    no_slot = LoRAConv1D(8, 12, LoRAConfig(r=4), enabled=(False, False, False))
    assert [n for n, _ in no_slot.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in LoRAConv1D(8, 12, LoRAConfig(r=0), enabled=(True,)).named_parameters()] == ["weight", "bias"]


def test_merge_equals_unmerged_and_unmerge_restores():
    layer = _random_layer((True, False, True))
    x = torch.randn(3, 8)
    before, weight = layer(x), layer.weight.detach().clone()
    layer.merge()
    assert layer.merged and (layer(x) - before).abs().max().item() <= 1e-5
    assert (layer.weight - weight).abs().max() > 0.1  # the update really went into the weight
    layer.unmerge()
    assert (layer.weight - weight).abs().max().item() <= 1e-6
    assert (layer(x) - before).abs().max().item() <= 1e-6


def _gpt2(lora, b_std):
    model = GPT2LMModel(SMALL, lora).eval()
    weights = {**random_weights(), **lora_weights(SMALL, lora, seed=2, b_std=b_std)}
    model.load_weights(weights)
    return model


def _logits(model, ids):
    with torch.no_grad():
        return model.logits(model(ids)[0])


def test_zero_b_leaves_the_base_model_unchanged():
    ids = torch.randint(0, SMALL.vocab_size, (2, 10))
    base = GPT2LMModel(SMALL).eval()
    base.load_weights(random_weights())
    assert torch.equal(_logits(_gpt2(ALL_TARGETS, b_std=0.0), ids), _logits(base, ids))
    assert not torch.allclose(_logits(_gpt2(ALL_TARGETS, b_std=0.05), ids), _logits(base, ids), atol=1e-3)


def test_merged_model_equals_unmerged_model():
    model = _gpt2(ALL_TARGETS, b_std=0.05)
    ids = torch.randint(0, SMALL.vocab_size, (2, 10))
    unmerged = _logits(model, ids)
    merge_lora(model)
    assert (_logits(model, ids) - unmerged).abs().max().item() <= 1e-5
    unmerge_lora(model)
    assert (_logits(model, ids) - unmerged).abs().max().item() <= 1e-5


def test_dropout_only_on_the_lora_branch_and_only_in_training():
    lora = LoRAConfig(r=4, alpha=32, dropout=0.5, targets="q,v")
    ids = torch.randint(0, SMALL.vocab_size, (2, 10))
    model = _gpt2(lora, b_std=0.0)
    model.train()
    assert torch.equal(_logits(model, ids), _logits(_gpt2(lora, b_std=0.0), ids))  # B = 0: dropout is invisible
    model = _gpt2(lora, b_std=0.05)
    model.train()
    assert not torch.equal(_logits(model, ids), _logits(model, ids))
    model.eval()
    assert torch.equal(_logits(model, ids), _logits(model, ids))


def test_set_trainable_and_lora_state():
    model = GPT2LMModel(SMALL, ALL_TARGETS)
    set_trainable(model, ALL_TARGETS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_shapes(SMALL, ALL_TARGETS)) == set(lora_state_dict(model))
    full = GPT2LMModel(SMALL)
    set_trainable(full, LoRAConfig(r=0))
    assert all(p.requires_grad for p in full.parameters()) and lora_state_dict(full) == {}


def test_first_backward_reaches_every_lora_b():
    """With B = 0 only B gets a gradient on the first step (A's gradient is B^T ... = 0); a B without
    gradient would never train (the prior Jittor port's bug)."""
    model = _gpt2(ALL_TARGETS, b_std=0.0)
    set_trainable(model, ALL_TARGETS)
    ids = torch.randint(0, SMALL.vocab_size, (2, 10))
    loss, _ = model.loss(model(ids)[0], ids, torch.ones(2, 10))
    loss.backward()
    for name, param in lora_state_dict(model).items():
        assert (param.grad.abs().sum() > 0) == name.endswith("lora_B"), name


@pytest.mark.parametrize("card", ["gpt2.sm", "gpt2.md", "gpt2.lg"])
def test_trainable_counts_of_the_real_models(card):
    config, lora = get_card(card), LoRAConfig(r=4, alpha=32, targets="q,v")
    with torch.device("meta"):
        model = GPT2LMModel(config, lora)
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
