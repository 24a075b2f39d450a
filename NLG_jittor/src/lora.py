"""LoRA (Hu et al. 2021) for GPT-2's Conv1D projections, in the spirit of loralib.

One layer covers both loralib variants: a projection whose output is cut into equal slices, some
of which carry a low-rank update. The fused q/k/v projection has three slices (loralib's
MergedLinear, e.g. LoRA on q and v only); every other projection has one (loralib's Linear).
Helpers below mark what trains, list it (what an adapter stores), and merge / unmerge.
The Jittor mirror of NLG_pytorch/src/lora.py: a parameter is a Var attribute, trainable unless stop_grad.
"""
import sys

from jittor_env import jt
from lora_nlg.model.config import LoRAConfig, count_parameters, count_trainable, param_shapes

nn = jt.nn

LORA_SUFFIXES = (".lora_A", ".lora_B")


class LoRAConv1D(nn.Module):
    """GPT-2's Conv1D, y = x @ weight + bias with weight stored [in, out], plus optional LoRA.

    The output is cut into len(enabled) equal slices of width n = out / len(enabled). Slice i with
    enabled[i] gets `scaling * dropout(x) @ A_j.T @ B_j.T`, where j counts the enabled slices before it,
    A_j = lora_A[j*r:(j+1)*r] ([r, in]) and B_j = lora_B[j*n:(j+1)*n] ([n, r]): loralib's layout,
    so official adapters load unchanged. r, scaling (alpha / r) and dropout come from `lora` (a LoRAConfig;
    None: no LoRA). With r == 0 or no enabled slice it is a plain Conv1D without LoRA parameters.
    Dropout applies to the LoRA branch input only, as in the reference; it starts switched on, as torch
    modules start in training mode (jt.nn.Dropout defaults to off).
    """

    def __init__(self, n_in, n_out, lora=None, enabled=(True,)):
        super().__init__()
        lora = lora or LoRAConfig(r=0)
        if n_out % len(enabled):
            raise ValueError(f"{len(enabled)} LoRA slices do not divide {n_out} outputs")
        self.weight = jt.zeros(n_in, n_out)
        self.bias = jt.zeros(n_out)
        self.enabled = tuple(bool(on) and lora.r > 0 for on in enabled)
        self.r = lora.r if any(self.enabled) else 0
        self.slice_size = n_out // len(enabled)
        self.scaling = lora.scaling if self.r else 0.0
        self.merged = False
        if self.r:
            n_enabled = sum(self.enabled)
            self.lora_A = jt.zeros(self.r * n_enabled, n_in)
            self.lora_B = jt.zeros(self.slice_size * n_enabled, self.r)
            self.lora_dropout = nn.Dropout(lora.dropout, is_train=True)

    def execute(self, x):
        out = x @ self.weight + self.bias
        if self.r and not self.merged:
            x = self.lora_dropout(x)
            zeros = None if all(self.enabled) else jt.zeros(*x.shape[:-1], self.slice_size, dtype=x.dtype)
            out = out + self.scaling * self._fill_slices([x @ a.t() @ b.t() for a, b in self._blocks()], zeros)
        return out

    def _blocks(self):
        """(A_j, B_j) of each enabled slice, in slice order."""
        r, n = self.r, self.slice_size
        return [(self.lora_A[j * r:(j + 1) * r], self.lora_B[j * n:(j + 1) * n]) for j in range(sum(self.enabled))]

    def _fill_slices(self, updates, zeros):
        """Concatenate per-slice updates along the last dimension, `zeros` where a slice has no LoRA."""
        updates = iter(updates)
        return jt.concat([next(updates) if on else zeros for on in self.enabled], dim=-1)

    def delta_weight(self):
        """The [in, out] matrix LoRA adds to weight: scaling * (B_j @ A_j).T in each enabled slice."""
        zeros = jt.zeros(self.weight.shape[0], self.slice_size, dtype=self.weight.dtype)
        return self.scaling * self._fill_slices([(b @ a).t() for a, b in self._blocks()], zeros)

    def merge(self):
        """Fold the LoRA update into weight (inference: one matmul instead of three)."""
        if self.r and not self.merged:
            self.weight.update(self.weight + self.delta_weight())  # update detaches: no jt.no_grad needed
            self.merged = True

    def unmerge(self):
        """Take the LoRA update back out of weight (before training or saving the base again)."""
        if self.r and self.merged:
            self.weight.update(self.weight - self.delta_weight())
            self.merged = False


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, LoRAConv1D) and m.r]


def merge_lora(model):
    """Merge every LoRA layer; while merged, the base weights in the state hold W + delta."""
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model):
    for layer in lora_layers(model):
        layer.unmerge()


def is_lora_name(name):
    return name.endswith(LORA_SUFFIXES)


def set_trainable(model, lora):
    """Only LoRA tensors train (backbone frozen, as loralib's mark_only_lora_as_trainable); all when r == 0."""
    for name, param in model.named_parameters():
        param.requires_grad = lora.r == 0 or is_lora_name(name)


def trainable_state_dict(model):
    """Name -> tensor of what training changes: the adapter's content (LoRA, or all weights when r == 0)."""
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def report_trainable(model, config, lora, file=sys.stdout):
    """Print and return the trainable-parameter count, checked against the framework-free count."""
    expected = count_trainable(config, lora)
    actual = sum(param.numel() for param in model.parameters() if param.requires_grad)
    if actual != expected:
        raise RuntimeError(f"model has {actual:,} trainable parameters, the card and LoRA config say {expected:,}")
    total = sum(param.numel() for param in model.parameters())
    print(f"trainable parameters: {actual:,} of {total:,} ({100.0 * actual / total:.3f}%); "
          f"base model {count_parameters(param_shapes(config)):,}", file=file)
    return actual
