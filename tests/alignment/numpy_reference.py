"""The reference formulas in float64 numpy, written independently of either framework's model code.

Tests compare a framework's float32 result with these, so a shared mistake in both trees (the
alignment tests alone would miss it) still shows.
"""
import math

import numpy as np


def gelu_tanh(x):
    """GPT-2's gelu_new."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    """The exact GELU (jt.nn.gelu, torch's default): NOT what GPT-2 uses."""
    return np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))(np.asarray(x, np.float64))


def layer_norm(x, weight, bias, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return weight * (x - mean) / np.sqrt(var + eps) + bias


def log_softmax(logits):
    x = np.asarray(logits, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def masked_lm_loss(logits, target, mask, label_smooth):
    """microsoft/LoRA's loss on full logits: per position (1 - eps) * nll + eps * mean(-log p), times mask,
    summed, / (mask.sum() + 1e-4). Returns (loss, d loss / d logits)."""
    logprobs = log_softmax(logits)
    vocab = logprobs.shape[-1]
    onehot = np.zeros(logprobs.shape)
    np.put_along_axis(onehot, np.asarray(target)[..., None], 1.0, axis=-1)
    per_token = -(1.0 - label_smooth) * (logprobs * onehot).sum(-1) - label_smooth * logprobs.mean(-1)
    denom = mask.sum() + 1e-4
    d_logprobs = -((1.0 - label_smooth) * onehot + label_smooth / vocab)
    d_logits = (d_logprobs - np.exp(logprobs) * d_logprobs.sum(-1, keepdims=True)) * (mask / denom)[..., None]
    return float((per_token * mask).sum() / denom), d_logits


def grouped_lora_update(x, lora_a, lora_b, enabled, n_out, scaling):
    """loralib MergedLinear's update: after_A = x @ A.T; a grouped 1x1 conv (group j: rows j of B, its r
    channels of after_A); the group outputs scattered into the enabled output slices, zeros elsewhere."""
    k = sum(enabled)
    r = lora_a.shape[0] // k
    after_a = np.asarray(x, np.float64) @ lora_a.T
    groups = after_a.reshape(*after_a.shape[:-1], k, r)  # [..., k, r]
    weights = lora_b.reshape(k, -1, r)  # [k, n, r]
    after_b = np.einsum("...kr,knr->...kn", groups, weights)
    width = n_out // len(enabled)
    update = np.zeros((*after_a.shape[:-1], n_out))
    for j, slot in enumerate(i for i, on in enumerate(enabled) if on):
        update[..., slot * width:(slot + 1) * width] = after_b[..., j, :]
    return scaling * update


def adamw(params, grads, lrs, beta1, beta2, eps, weight_decay, correct_bias):
    """microsoft/LoRA's AdamW, step by step: `grads` and `lrs` hold one entry per step."""
    params = {n: p.astype(np.float64) for n, p in params.items()}
    m = {n: np.zeros_like(p) for n, p in params.items()}
    v = {n: np.zeros_like(p) for n, p in params.items()}
    for t, (step_grads, lr) in enumerate(zip(grads, lrs), start=1):
        for n in params:
            g = step_grads[n].astype(np.float64)
            m[n] = beta1 * m[n] + (1 - beta1) * g
            v[n] = beta2 * v[n] + (1 - beta2) * g * g
            step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) if correct_bias else lr
            params[n] = params[n] - step_size * m[n] / (np.sqrt(v[n]) + eps)
            params[n] = params[n] - lr * weight_decay * params[n]
    return params


def clip_by_global_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_'s result: (total norm, clipped gradients)."""
    total = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    coef = min(1.0, max_norm / (total + 1e-6))
    return total, [g.astype(np.float64) * coef for g in grads]
