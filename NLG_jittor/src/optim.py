"""AdamW and gradient clipping as microsoft/LoRA's training computes them, written formula by formula.

The learning rate is not stored here: the trainer passes `lr_at(optimizer.step_count, ...)` from
lora_nlg.train.schedules to every `step`, so both trees share one schedule implementation.

The Jittor mirror of NLG_pytorch/src/optim.py. Jittor Vars carry no `.grad`: the optimizer holds the
gradients (`grads`, name -> Var, where torch has the parameters' `.grad`), filled by `backward(loss)`,
which both trees' trainers call where torch code calls `loss.backward()`.
Values are written with Var.update, which detaches by itself: no jt.no_grad (under which an update
would also freeze the parameter).
"""
import math

import numpy as np

from jittor_env import jt
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
    pairs of the trainable parameters; names key the exported state. `grads`: name -> gradient Var,
    filled by `backward`. `foreach`: torch's multi-tensor update; Jittor has no _foreach ops, so only False (the
    loop) is accepted, and the loop is already batched: its lazy updates of all tensors run in one jt.sync,
    with each tensor's element-wise chain fused into one kernel.
    """

    def __init__(self, named_params, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0, correct_bias=True,
                 foreach=False):
        if foreach:
            raise ValueError("AdamW(foreach=True): Jittor has no _foreach ops (its loop runs in one sync)")
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
        self.exp_avg = {name: jt.zeros_like(p).stop_grad() for name, p in self.params.items()}
        self.exp_avg_sq = {name: jt.zeros_like(p).stop_grad() for name, p in self.params.items()}
        self.grads = {}

    def backward(self, loss):
        """Add the gradient of `loss` to `grads` (torch's loss.backward(): accumulates until zero_grad).

        Jittor frees the forward graph here, and gives zeros rather than no gradient for a parameter the
        loss does not reach; tests/NLG_jittor/test_lora.py checks that every LoRA tensor is reached."""
        names = list(self.params)
        grads = jt.grad(loss, [self.params[name] for name in names], retain_graph=False)
        for name, g in zip(names, grads):
            g = g.stop_grad()
            self.grads[name] = g if name not in self.grads else self.grads[name] + g
        jt.sync([loss, *self.grads.values()])  # run forward and backward now, so no graph outlives the batch

    def zero_grad(self):
        self.grads = {}

    def step(self, lr):
        """One update of every parameter with learning rate `lr`; a parameter without gradient is an error
        (a step without `backward` since the last zero_grad)."""
        missing = [name for name in self.params if name not in self.grads]
        if missing:
            raise RuntimeError(f"no gradient for trainable parameter(s): {', '.join(missing[:6])}"
                               + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else ""))
        self.step_count += 1
        beta1, beta2 = self.beta1, self.beta2
        step_size = lr
        if self.correct_bias:
            step_size = lr * math.sqrt(1.0 - beta2 ** self.step_count) / (1.0 - beta1 ** self.step_count)
        for name, p in self.params.items():
            g = self.grads[name]
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.update(beta1 * m + (1.0 - beta1) * g)
            v.update(beta2 * v + (1.0 - beta2) * g * g)
            denom = jt.sqrt(v) + self.eps
            p.update(p - step_size * m / denom)
            if self.weight_decay > 0.0:
                p.update(p - lr * self.weight_decay * p)
        jt.sync([*self.params.values(), *self.exp_avg.values(), *self.exp_avg_sq.values()])  # run the lazy update now

    def state_arrays(self):
        """Numpy state for resuming: `step`, `exp_avg.<name>`, `exp_avg_sq.<name>` (safetensors-ready)."""
        arrays = {"step": np.array([self.step_count], dtype=np.int64)}  # shape (1,): safetensors has no 0-d
        for name in self.params:
            arrays[f"exp_avg.{name}"] = self.exp_avg[name].numpy().copy()
            arrays[f"exp_avg_sq.{name}"] = self.exp_avg_sq[name].numpy().copy()
        return arrays

    def load_state_arrays(self, arrays, source="optimizer state"):
        """Restore `state_arrays()` output; names and shapes must match this optimizer's parameters exactly."""
        expected = {"step": (1,)}
        for name, p in self.params.items():
            expected[f"exp_avg.{name}"] = tuple(p.shape)
            expected[f"exp_avg_sq.{name}"] = tuple(p.shape)
        check_shapes(expected, {name: np.shape(value) for name, value in arrays.items()}, source)
        self.step_count = int(arrays["step"][0])
        for name in self.params:
            self.exp_avg[name].update(jt.array(np.asarray(arrays[f"exp_avg.{name}"], dtype=np.float32)))
            self.exp_avg_sq[name].update(jt.array(np.asarray(arrays[f"exp_avg_sq.{name}"], dtype=np.float32)))


def clip_grad_norm(grads, max_norm):
    """Scale gradients so their global L2 norm is at most max_norm, as torch.nn.utils.clip_grad_norm_:
    total = sqrt(sum of all squared gradient values); every gradient *= min(1, max_norm / (total + 1e-6)).
    `grads`: gradient Vars (`optimizer.grads.values()`), scaled in place. Returns total (before clipping) as a
    0-d Var, as torch's does: the coefficient stays a Var too, so clipping needs no host sync (float(total) is
    one, for callers that want the number).
    The squares are summed in float64: Jittor sums one term after another, and in float32 that drifts
    by ~1e-5 over the 6.4M values of a gpt2.tiny embedding gradient."""
    grads = list(grads)
    if not grads:
        return jt.array(0.0)
    total = jt.sqrt(sum((g.float64() ** 2).sum() for g in grads))
    coef = jt.clamp(max_norm / (total + 1e-6), max_v=1.0).float32()
    for g in grads:
        g.update(g * coef)
    return total
