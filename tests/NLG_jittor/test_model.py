"""The Jittor GPT-2: Jittor's numerical pitfalls, canonical parameters, KV cache, left padding, the masked loss.

Logits against PyTorch (and through it Hugging Face) are in test_alignment_model.py; here the
model is checked against the float64 numpy formulas of tests/alignment/numpy_reference.py.
"""
import numpy as np
import pytest

from alignment import numpy_reference as ref
from alignment.fixtures import SMALL, lora_weights, random_weights, token_ids
from jittor_env import jt
from lora import merge_lora, set_trainable
from lora_nlg.model.config import LoRAConfig, lora_shapes, param_shapes
from lora_nlg.util.errors import CheckpointError
from model import GPT2LMModel, LayerNorm, gelu, log_softmax
from optim import AdamW

LORA = LoRAConfig(r=4, alpha=32, targets="q,v,o,fc,proj")


def _model(lora=None, seed=0):
    """SMALL GPT-2 with random weights; with LoRA, B is random too so the LoRA branch matters."""
    model = GPT2LMModel(SMALL, lora).eval()
    weights = random_weights(seed=seed)
    if lora is not None:
        weights.update(lora_weights(SMALL, lora, seed))
    model.load_weights(weights)
    return model


def _ids(shape, seed=0):
    return jt.array(token_ids(shape, seed=seed))


def test_layer_norm_is_the_two_pass_form():
    """jt.nn.LayerNorm takes E[x^2] - E[x]^2, which in float32 loses a small variance under a large mean."""
    rng = np.random.default_rng(0)
    x = (100.0 + rng.normal(0.0, 0.1, (4, 64))).astype(np.float32)
    norm = LayerNorm(64, eps=1e-5)
    weight, bias = rng.normal(1.0, 0.2, 64).astype(np.float32), rng.normal(0.0, 0.1, 64).astype(np.float32)
    norm.weight.update(jt.array(weight))
    norm.bias.update(jt.array(bias))
    expected = ref.layer_norm(x, weight, bias, 1e-5)
    assert np.abs(norm(jt.array(x)).numpy() - expected).max() <= 1e-3  # float32 spacing at 100 is 8e-6 = 8e-5 std
    print("jt.nn.LayerNorm error on the same input:",
          np.abs(jt.nn.LayerNorm(64)(jt.array(x)).numpy() * weight + bias - expected).max())


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 241).astype(np.float32)
    got = gelu(jt.array(x)).numpy()
    assert np.abs(got - ref.gelu_tanh(x)).max() <= 1e-6
    assert np.abs(got - ref.gelu_erf(x)).max() > 1e-4  # what jt.nn.gelu computes would not pass the line above


def test_log_softmax_gradient_matches_float64_over_the_vocabulary():
    """jt.nn.log_softmax differentiates through its max shift; over 50257 logits the float32 rounding of the
    row sum then lands on the top logit (7e-4 off here). Ours must give every entry to float32 precision."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (6, 50257)).astype(np.float32)
    target = rng.integers(0, 50257, 6)
    x = jt.array(logits)
    logprobs = log_softmax(x)
    per_token = 0.9 * -logprobs.gather(1, jt.array(target)[:, None]).reshape(-1) + 0.1 * -logprobs.mean(-1)
    got = jt.grad(per_token.sum(), x).numpy()
    _, expected = ref.masked_lm_loss(logits, target, np.ones(6), 0.1)
    expected *= 6 + 1e-4  # ref divides by mask.sum() + 1e-4
    assert np.abs(logprobs.numpy() - ref.log_softmax(logits)).max() <= 1e-5
    assert (np.abs(got - expected) <= 1e-6 * np.abs(expected) + 1e-12).all()


def test_parameters_are_exactly_the_canonical_names():
    """In Jittor every Var attribute is a parameter: nothing else (masks, caches) may live on the model."""
    assert {n: tuple(p.shape) for n, p in GPT2LMModel(SMALL).named_parameters()} == param_shapes(SMALL)
    model = _model(LORA)
    expected = {**param_shapes(SMALL), **lora_shapes(SMALL, LORA)}
    hidden, _ = model(_ids((2, 8)), left_pad=jt.array([0, 3]))
    model.loss(hidden, _ids((2, 8)), jt.ones(2, 8))
    merge_lora(model)
    assert {n: tuple(p.shape) for n, p in model.named_parameters()} == expected
    assert set(model.state_dict()) == set(expected)
    assert list(GPT2LMModel(SMALL).state_dict()) == list(param_shapes(SMALL))  # canonical order, no extras


def test_load_weights_names_the_bad_key():
    weights = random_weights()
    weights["h.1.attn.c_proj.weight"] = weights["h.1.attn.c_proj.weight"][:, :10]
    del weights["ln_f.bias"]
    with pytest.raises(CheckpointError) as info:
        GPT2LMModel(SMALL).load_weights(weights, source="test weights")
    message = str(info.value)
    assert message.startswith("test weights: missing keys: ln_f.bias; shape mismatch: h.1.attn.c_proj.weight")
    assert "\n" not in message


def test_load_weights_copies_values_and_keeps_the_trainable_marking():
    lora = LoRAConfig(r=4, alpha=32, targets="q,v")
    weights = {**random_weights(seed=1), **lora_weights(SMALL, lora, 1)}
    model = GPT2LMModel(SMALL, lora)
    set_trainable(model, lora)
    model.load_weights(weights)
    assert all(np.array_equal(w, weights[n]) for n, w in model.numpy_weights().items())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(lora_shapes(SMALL, lora))


@pytest.mark.parametrize("lora", [None, LORA])
def test_kv_cache_decoding_equals_full_forward(lora):
    model = _model(lora)
    ids = _ids((2, 12), seed=1)
    with jt.no_grad():
        full, _ = model(ids)
        hidden, past = model(ids[:, :5])
        steps = [hidden]
        for t in range(5, 12):
            hidden, past = model(ids[:, t:t + 1], past=past)
            steps.append(hidden)
        cached = jt.concat(steps, dim=1).numpy()
    assert tuple(past[0][0].shape) == (2, SMALL.n_head, 12, SMALL.n_embd // SMALL.n_head)
    assert np.abs(cached - full.numpy()).max() <= 1e-5


@pytest.mark.parametrize("lora", [None, LORA])
def test_left_padded_rows_equal_unpadded_rows(lora):
    """Prompts of lengths 3, 9, 6 decoded as one left-padded batch, then 4 cached steps: each row
    must match the same row run alone (prompt + continuation, one full forward)."""
    model = _model(lora)
    prompts = [token_ids(n, seed=10 + n) for n in (3, 9, 6)]
    continuation = token_ids((3, 4), seed=2)
    width = max(len(p) for p in prompts)
    left_pad = np.array([width - len(p) for p in prompts])
    junk = token_ids((3, width), seed=5)  # pad ids must not matter
    batch = np.stack([np.concatenate([junk[i, :left_pad[i]], p]) for i, p in enumerate(prompts)])
    with jt.no_grad():
        hidden, past = model(jt.array(batch), left_pad=jt.array(left_pad))
        assert np.isfinite(hidden.numpy()).all()  # pad queries see no key, yet stay finite
        batched = [model.logits(hidden[:, -1]).numpy()]
        for t in range(4):
            hidden, past = model(jt.array(continuation[:, t:t + 1]), past=past, left_pad=jt.array(left_pad))
            batched.append(model.logits(hidden[:, -1]).numpy())
        for i, prompt in enumerate(prompts):
            alone, _ = model(jt.array(np.concatenate([prompt, continuation[i]])[None]))
            expected = model.logits(alone[0, len(prompt) - 1:]).numpy()
            got = np.stack([step[i] for step in batched])
            assert np.abs(got - expected).max() <= 1e-5


def test_positions_beyond_the_context_are_an_error():
    with pytest.raises(ValueError, match="n_positions=64"):
        GPT2LMModel(SMALL)(_ids((1, 65)))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_loss_equals_the_full_logits_formula(eps):
    model = GPT2LMModel(SMALL)
    model.load_weights(random_weights())
    ids, target = _ids((3, 16), seed=1), token_ids((3, 16), seed=2)
    mask = np.zeros((3, 16), np.float32)
    mask[0, 4:9] = 1
    mask[1, 10:16] = 1
    mask[2, 1:2] = 1
    hidden, _ = model(ids)
    loss, n_tokens = model.loss(hidden, jt.array(target), jt.array(mask), label_smooth=eps)
    grad = jt.grad(loss, hidden).numpy()
    wte = model.wte.weight.numpy().astype(np.float64)
    expected, d_logits = ref.masked_lm_loss(hidden.numpy().astype(np.float64) @ wte.T, target, mask, eps)
    assert n_tokens == 12
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert np.abs(grad - d_logits @ wte).max() <= 1e-6 * np.abs(d_logits @ wte).max()
    if eps == 0:  # and plain cross-entropy, the reference's branch without smoothing
        ce = jt.nn.cross_entropy_loss(model.logits(hidden).reshape(-1, SMALL.vocab_size), jt.array(target.reshape(-1)),
                                      reduction="none").numpy()
        assert loss.item() == pytest.approx((ce * mask.reshape(-1)).sum() / (mask.sum() + 1e-4), rel=1e-6)


def test_train_and_eval_switch_dropout_only():
    """jt.Module.eval() would stop every gradient and train() restart them, undoing set_trainable."""
    lora = LoRAConfig(r=4, alpha=32, dropout=0.5, targets="q,v")
    model = GPT2LMModel(SMALL, lora)
    set_trainable(model, lora)
    assert all(m.training for m in model.modules())  # a new model trains, as in torch
    marking = {n: p.requires_grad for n, p in model.named_parameters()}
    model.eval()
    assert not any(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == marking
    model.train()
    assert all(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == marking
    assert AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad]).params.keys() == set(
        lora_shapes(SMALL, lora))


def test_gelu_gradient_is_finite_and_exact_for_large_inputs():
    """Jittor's tanh gradient (1 / cosh^2) is nan for large |z| in its -Ofast kernels; a GELU input below -15
    stopped a LoRA run. The gradient must be the analytic one everywhere (0 where tanh saturates)."""
    x = np.concatenate([np.linspace(-1000, -20, 50), np.linspace(-20, 20, 4001), np.linspace(20, 1000, 50)])
    xs = jt.array(x.astype(np.float32))
    grad = jt.grad(gelu(xs).sum(), xs).numpy().astype(np.float64)
    c = np.sqrt(2.0 / np.pi)
    t = np.tanh(c * (x + 0.044715 * x ** 3))
    exact = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t ** 2) * c * (1.0 + 3 * 0.044715 * x ** 2)
    assert np.isfinite(grad).all()
    assert np.abs(grad - exact).max() < 1e-5
