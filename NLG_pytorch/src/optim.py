"""AdamW and gradient clipping as microsoft/LoRA's training computes them, written formula by formula.

The learning rate is not stored here: the trainer passes `lr_at(optimizer.step_count, ...)` from
lora_nlg.train.schedules to every `step`, so both trees share one schedule implementation.
"""
import math

import numpy as np
import torch

from lora_nlg.checkpoints.tensor_files import check_shapes


class AdamW:
    """AdamW of microsoft/LoRA's optimizer.py. Per tensor, at update t = 1, 2, ...:

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v) + eps
        step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t)   if correct_bias else lr
        p = p - step_size * m / denom
        p = p - lr * weight_decay * p                        (decoupled decay, AFTER the update)

    Defaults are the reference's (betas 0.9 / 0.98, eps 1e-6). `named_params`: (name, parameter)
    pairs of the trainable parameters; names key the exported state. `foreach`: update all tensors at once
    with torch._foreach_* ops (see _foreach_update: the same bits as the per-tensor loop, which False runs).
    """

    def __init__(self, named_params, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0, correct_bias=True,
                 foreach=True):
        self.params = dict(named_params)
        frozen = [name for name, p in self.params.items() if not p.requires_grad]
        if frozen:
            raise ValueError(f"AdamW given frozen parameter(s): {', '.join(frozen[:6])}")
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.correct_bias = correct_bias
        self.foreach = foreach
        self.step_count = 0  # updates done so far; lr_at(step_count, ...) is the rate of the next one
        self.exp_avg = {name: torch.zeros_like(p) for name, p in self.params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p) for name, p in self.params.items()}

    def backward(self, loss):
        """Add the gradient of `loss` to the parameters' `.grad` (loss.backward(): accumulates until zero_grad)."""
        loss.backward()

    def zero_grad(self):
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self, lr):
        """One update of every parameter with learning rate `lr`; a parameter without gradient is an error
        (a trainable tensor the loss does not reach is a bug, e.g. LoRA B never trained)."""
        missing = [name for name, p in self.params.items() if p.grad is None]
        if missing:
            raise RuntimeError(f"no gradient for trainable parameter(s): {', '.join(missing[:6])}"
                               + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else ""))
        self.step_count += 1
        beta1, beta2 = self.beta1, self.beta2
        step_size = lr
        if self.correct_bias:
            step_size = lr * math.sqrt(1.0 - beta2 ** self.step_count) / (1.0 - beta1 ** self.step_count)
        if self.foreach:
            self._foreach_update(lr, step_size)
            return
        for name, p in self.params.items():
            g = p.grad
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.copy_(beta1 * m + (1.0 - beta1) * g)
            v.copy_(beta2 * v + (1.0 - beta2) * g * g)
            denom = torch.sqrt(v) + self.eps
            p.copy_(p - step_size * m / denom)
            if self.weight_decay > 0.0:
                p.copy_(p - lr * self.weight_decay * p)

    def _foreach_update(self, lr, step_size):
        """The loop of `step` over all tensors at once: one torch._foreach_* call per operation (on CUDA a few
        kernels for all tensors instead of one per tensor and operation; on CPU a C++ loop), operation for
        operation the loop's, so each value is rounded the same times in the same order: the same bits
        (tests/NLG_pytorch/test_fast_paths.py, torch.equal). The fused forms are not: _foreach_add_(m, g,
        alpha=1 - beta1) is one multiply-add on CPU (one rounding where the loop has two), addcmul_ rounds
        (1 - beta2) * g * g differently on CPU, and CUDA's _foreach_addcdiv_ computes p + s * (m / denom)."""
        params = list(self.params.values())
        grads = [p.grad for p in params]
        m, v = list(self.exp_avg.values()), list(self.exp_avg_sq.values())
        torch._foreach_mul_(m, self.beta1)
        torch._foreach_add_(m, torch._foreach_mul(grads, 1.0 - self.beta1))  # m = beta1 * m + (1 - beta1) * g
        squares = torch._foreach_mul(grads, 1.0 - self.beta2)
        torch._foreach_mul_(squares, grads)
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_add_(v, squares)  # v = beta2 * v + (1 - beta2) * g * g
        del squares
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_mul(m, step_size)
        torch._foreach_div_(update, denom)
        del denom
        torch._foreach_sub_(params, update)  # p = p - step_size * m / denom
        del update
        if self.weight_decay > 0.0:
            torch._foreach_sub_(params, torch._foreach_mul(params, lr * self.weight_decay))

    def state_arrays(self):
        """Numpy state for resuming: `step`, `exp_avg.<name>`, `exp_avg_sq.<name>` (safetensors-ready)."""
        arrays = {"step": np.array([self.step_count], dtype=np.int64)}  # shape (1,): safetensors has no 0-d
        for name in self.params:
            arrays[f"exp_avg.{name}"] = self.exp_avg[name].detach().cpu().numpy().copy()
            arrays[f"exp_avg_sq.{name}"] = self.exp_avg_sq[name].detach().cpu().numpy().copy()
        return arrays

    def load_state_arrays(self, arrays, source="optimizer state"):
        """Restore `state_arrays()` output; names and shapes must match this optimizer's parameters exactly."""
        expected = {"step": (1,)}
        for name, p in self.params.items():
            expected[f"exp_avg.{name}"] = tuple(p.shape)
            expected[f"exp_avg_sq.{name}"] = tuple(p.shape)
        check_shapes(expected, {name: np.shape(value) for name, value in arrays.items()}, source)
        self.step_count = int(arrays["step"][0])
        with torch.no_grad():
            for name in self.params:
                self.exp_avg[name].copy_(torch.from_numpy(np.asarray(arrays[f"exp_avg.{name}"], dtype=np.float32)))
                self.exp_avg_sq[name].copy_(torch.from_numpy(np.asarray(arrays[f"exp_avg_sq.{name}"],
                                                                         dtype=np.float32)))


@torch.no_grad()
def clip_grad_norm(grads, max_norm):
    """Scale gradients so their global L2 norm is at most max_norm, as torch.nn.utils.clip_grad_norm_:
    total = sqrt(sum of all squared gradient values); every gradient *= min(1, max_norm / (total + 1e-6)).
    `grads`: gradient tensors (the parameters' `.grad`), scaled in place. Returns total (before clipping) as a
    0-d tensor on the gradients' device, as torch's does: the coefficient stays a tensor too, so clipping needs no
    host sync (float(total) is one, for callers that want the number)."""
    grads = list(grads)
    if not grads:
        return torch.tensor(0.0)
    total = torch.sqrt(sum((g * g).sum() for g in grads))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total
