"""The C++ CPU kernels of NLG_jittor/src/cpu_kernels.py against the plain Jittor expressions they replace and a
float64 numpy reference: values and gradients."""
import math

import cpu_kernels
import numpy as np
import pytest

import model
from jittor_env import jt


def reference(x, target, eps, weights):
    """float64 numpy: the per-row smoothed NLL and the gradient of sum(weights * it) with respect to x."""
    x = x.astype(np.float64)
    top = x.max(1, keepdims=True)
    lse = (top + np.log(np.exp(x - top).sum(1, keepdims=True)))[:, 0]
    rows = np.arange(len(x))
    loss = (1 - eps) * (lse - x[rows, target]) + eps * (lse - x.mean(1))
    onehot = np.zeros_like(x)
    onehot[rows, target] = 1.0
    grad = weights[:, None] * (np.exp(x - lse[:, None]) - (1 - eps) * onehot - eps / x.shape[1])
    return loss, grad


def plain_log_softmax(x):
    """model.log_softmax's written-out lines (what CUDA runs)."""
    x = x.float64()
    shifted = x - x.max(-1, keepdims=True).stop_grad()
    return (shifted - shifted.exp().sum(-1, keepdims=True).log()).float32()


def plain(x, target, eps):
    """The expression token_losses runs on CUDA (and ran on the CPU before the kernel)."""
    logprobs = plain_log_softmax(x)
    per_token = -logprobs.gather(1, target[:, None]).reshape(-1)
    return (1.0 - eps) * per_token + eps * (-logprobs.mean(-1)) if eps > 0 else per_token


def case(rows, vocab, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (rows, vocab)).astype(np.float32)
    target = rng.integers(0, vocab, rows)
    target[0] = int(x[0].argmax())  # the target at the row's top logit
    return x, target, rng.normal(size=rows).astype(np.float32)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("rows, vocab, scale", [(64, 50257, 3.0), (3, 7, 1.0), (5, 50257, 300.0)])
def test_smoothed_nll_values_and_gradients(rows, vocab, scale, eps):
    x, target, weights = case(rows, vocab, scale, seed=rows)
    want_loss, want_grad = reference(x, target, eps, weights.astype(np.float64))
    xv, tv, wv = jt.array(x), jt.array(target), jt.array(weights)
    for name, function in (("kernel", cpu_kernels.smoothed_nll), ("plain", plain)):
        loss = function(xv, tv, eps)
        grad = jt.grad((loss * wv).sum(), xv).numpy()
        assert loss.dtype == "float32" and grad.dtype == np.float32
        assert np.abs(loss.numpy() - want_loss).max() <= 2e-6 * max(1.0, np.abs(want_loss).max()), name
        assert np.abs(grad - want_grad).max() <= 2e-6 * np.abs(want_grad).max(), name


def test_token_losses_runs_the_kernel_on_the_cpu_and_matches_the_plain_lines(monkeypatch):
    x, target, weights = case(16, 50257, 3.0, seed=3)
    xv, tv = jt.array(x), jt.array(target)
    calls, kernel = [], cpu_kernels.smoothed_nll
    monkeypatch.setattr(cpu_kernels, "smoothed_nll", lambda *a: calls.append(a) or kernel(*a))
    fused = model.token_losses(xv, tv, 0.1)
    assert len(calls) == 1
    np.testing.assert_allclose(fused.numpy(), plain(xv, tv, 0.1).numpy(), rtol=2e-6)


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 4), (4, 1, 9, 16)])  # (batch..., M, K, N)
def test_batched_matmul_values_and_gradients(shape, transpose_b):
    *lead, m, k, n = shape
    rng = np.random.default_rng(len(shape) + transpose_b)
    a = rng.normal(size=(*lead, m, k)).astype(np.float32)
    b = rng.normal(size=(*lead, n, k) if transpose_b else (*lead, k, n)).astype(np.float32)
    weights = rng.normal(size=(*lead, m, n)).astype(np.float32)
    b_as_kn = np.swapaxes(b, -1, -2) if transpose_b else b
    want = a.astype(np.float64) @ b_as_kn.astype(np.float64)
    want_da = weights.astype(np.float64) @ np.swapaxes(b_as_kn, -1, -2)
    want_db = np.swapaxes(a, -1, -2).astype(np.float64) @ weights
    av, bv, wv = jt.array(a), jt.array(b), jt.array(weights)
    c = cpu_kernels.batched_matmul(av, bv, transpose_b=transpose_b)
    da, db = jt.grad((c * wv).sum(), [av, bv])
    assert c.shape == want.shape
    np.testing.assert_allclose(c.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(da.numpy(), want_da, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db.numpy(), np.swapaxes(want_db, -1, -2) if transpose_b else want_db,
                               rtol=1e-5, atol=1e-5)
    plain = av @ (bv.transpose(-2, -1) if transpose_b else bv)  # Jittor's own, which CUDA keeps
    np.testing.assert_allclose(c.numpy(), plain.numpy(), rtol=1e-5, atol=1e-5)


def test_batched_matmul_takes_permuted_views_and_every_length():
    """Attention's operands are permuted views of [B, T, H, D]; one compiled kernel serves every sequence length."""
    rng = np.random.default_rng(0)
    for length in (3, 11, 40):
        x = rng.normal(size=(2, length, 4, 8)).astype(np.float32)
        q = jt.array(x).permute(0, 2, 1, 3)
        scores = cpu_kernels.batched_matmul(q, q, transpose_b=True)
        want = np.einsum("bthd,bshd->bhts", x.astype(np.float64), x.astype(np.float64))
        np.testing.assert_allclose(scores.numpy(), want, rtol=1e-5, atol=1e-5)


def plain_gelu(x):
    """model.gelu's written-out lines (what CUDA runs)."""
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * jt.pow(x, 3.0))
    return 0.5 * x * (1.0 + jt.tanh(inner.clamp(-model.TANH_SATURATED, model.TANH_SATURATED)))


def test_gelu_values_and_gradients_against_the_written_out_form_and_float64():
    """Inputs across GELU's range, the clamp's edges (|z| = 10 at |x| ~ 5.2) and far beyond (-60, +60)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 3, 5000), np.linspace(-8, 8, 4001), [-60.0, -20.0, 20.0, 60.0]])
    x = x.astype(np.float32)
    weights = rng.normal(size=x.shape).astype(np.float32)
    x64, c = x.astype(np.float64), math.sqrt(2.0 / math.pi)
    z = c * (x64 + 0.044715 * x64 ** 3)
    t = np.tanh(np.clip(z, -10, 10))
    want = 0.5 * x64 * (1 + t)
    want_grad = weights * (0.5 * (1 + t) + 0.5 * x64 * np.where(np.abs(z) > 10, 0.0, (1 - t * t) * c *
                                                                  (1 + 3 * 0.044715 * x64 ** 2)))
    xv, wv = jt.array(x), jt.array(weights)
    for name, function in (("kernel", lambda v: cpu_kernels.gelu(v, model.TANH_SATURATED)), ("plain", plain_gelu)):
        y = function(xv)
        grad = jt.grad((y * wv).sum(), xv).numpy()
        assert np.isfinite(grad).all(), name
        np.testing.assert_allclose(y.numpy(), want, rtol=2e-6, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("mask_batch", [1, 2])
def test_masked_softmax_values_and_gradients(mask_batch):
    """Causal and padded masks, as GPT2LMModel.attention_layout builds them ([B|1, 1, T, S]), no row all blocked."""
    rng = np.random.default_rng(mask_batch)
    b, h, t, s = 2, 3, 5, 7
    scores = rng.normal(0, 4, (b, h, t, s)).astype(np.float32)
    blocked = np.arange(s)[None, :] > (np.arange(t)[:, None] + s - t)  # causal over a past of s - t
    blocked = np.broadcast_to(blocked, (mask_batch, 1, t, s)).copy()
    if mask_batch == 2:
        blocked[1, 0, :, :2] = True  # row 1: two pad keys
    weights = rng.normal(size=scores.shape).astype(np.float32)
    filled = np.where(blocked, -np.inf, scores.astype(np.float64))
    want = np.exp(filled - filled.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    want_grad = want * (weights - (weights * want).sum(-1, keepdims=True))
    sv, bv, wv = jt.array(scores), jt.array(blocked), jt.array(weights)
    kernel = cpu_kernels.masked_softmax(sv, bv, model.MASKED_SCORE)
    plain = model.softmax(sv.masked_fill(bv, model.MASKED_SCORE))
    for name, probs in (("kernel", kernel), ("plain", plain)):
        grad = jt.grad((probs * wv).sum(), sv).numpy()
        np.testing.assert_allclose(probs.numpy(), want, rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6, err_msg=name)
        assert (probs.numpy()[np.broadcast_to(blocked, scores.shape)] == 0).all(), name


def test_log_softmax_values_and_gradients():
    """The beam search's [rows, vocab] scores (and a 3-D input): values to float32 rounding, the gradient too."""
    for shape, scale in (((30, 50257), 3.0), ((2, 3, 11), 50.0)):
        rng = np.random.default_rng(len(shape))
        x = rng.normal(0, scale, shape).astype(np.float32)
        weights = rng.normal(size=shape).astype(np.float32)
        x64 = x.astype(np.float64)
        want = x64 - x64.max(-1, keepdims=True)
        want -= np.log(np.exp(want).sum(-1, keepdims=True))
        want_grad = weights - np.exp(want) * weights.sum(-1, keepdims=True)
        xv, wv = jt.array(x), jt.array(weights)
        for name, function in (("kernel", cpu_kernels.log_softmax), ("plain", plain_log_softmax),
                               ("model", model.log_softmax)):
            y = function(xv)
            grad = jt.grad((y * wv).sum(), xv).numpy()
            np.testing.assert_allclose(y.numpy(), want, rtol=1e-6, atol=2e-6, err_msg=name)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-5, err_msg=name)


def test_beam_top_k_equals_sorting_every_candidate():
    """Examples x beams x vocabulary as the beam search has them, banned (-inf) tokens and ended (-inf) beams
    included; an exact tie resolves to the lower index."""
    rng = np.random.default_rng(7)
    examples, beams, vocab, k = 5, 4, 5003, 4
    scores = rng.normal(-3, 1, (examples, beams)).astype(np.float32)
    scores[1, 2] = -np.inf  # an ended beam
    logprobs = rng.normal(-9, 2, (examples * beams, vocab)).astype(np.float32)
    logprobs[:, 17] = -np.inf  # a banned token in every row
    logprobs[8, 100] = logprobs[8, 200] = 5.0  # a tie at the top of example 2 (rows 8..11)
    values, indices = cpu_kernels.beam_top_k(jt.array(scores), jt.array(logprobs), k)
    candidates = (scores[:, :, None] + logprobs.reshape(examples, beams, vocab)).reshape(examples, -1)
    order = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(values, np.take_along_axis(candidates, order, 1))
    assert indices[2, 0] == 100 and indices[2, 1] == 200


def test_beam_top_k_leaves_too_few_finite_candidates_to_the_full_sort():
    scores = np.zeros((1, 1), np.float32)
    logprobs = np.full((1, 6), -np.inf, np.float32)
    logprobs[0, 2] = -1.0
    assert cpu_kernels.beam_top_k(jt.array(scores), jt.array(logprobs), 3) is None
