"""Fine-tune GPT-2 with LoRA: the PyTorch tensor work under the shared loop of lora_nlg.train.loop.

Flags (microsoft/LoRA's, defaults = its README E2E command) are in lora_nlg.train.cli, the loop,
logs and resumable state in lora_nlg; this file only runs the model, gradients and optimizer.

    cd NLG_pytorch && python src/gpt2_ft.py --train_data ../data/e2e/sampled_18pct/train.jsonl \\
        --valid_data ../data/e2e/sampled_18pct/valid.jsonl --work_dir ../trained_models/e2e ...
"""
import contextlib
import io
import os

import numpy as np
import torch

from distributed import Collective
from lora import report_trainable, set_trainable, trainable_state_dict
from lora_nlg.checkpoints.tensor_files import check_shapes
from lora_nlg.train.cli import TrainConfigError
from lora_nlg.train.loop import main
from lora_nlg.util.flags import reproducibility
from model import GPT2LMModel, mask_index, pick_device, set_matmul_precision
from optim import AdamW, clip_grad_norm


class TrainEngine:
    """Model, trainable parameters and AdamW of one run on one device (the interface: lora_nlg.train.loop).

    `settings`: the flags it needs, a lora_nlg.train.cli.EngineSettings (not the argparse Namespace)."""
    framework = "pytorch"

    def __init__(self, config, lora, weights, settings):
        self.ranks = settings.ranks
        self.device = pick_device(settings.device, self.ranks)
        self.autocast_dtype = torch.float16 if settings.fp16 else torch.bfloat16 if settings.bf16 else None
        autocast = "float16" if settings.fp16 else "bfloat16" if settings.bf16 else None
        if settings.bf16 and self.device.type == "cuda" and torch.cuda.get_device_capability(self.device) < (8, 0):
            raise TrainConfigError(f"--bf16: {torch.cuda.get_device_name(self.device)} has no bfloat16 arithmetic "
                                   f"(compute capability 8.0 or later); use --fp16")
        # --fp16/--bf16 on CPU are allowed, not refused: torch autocasts float16 and bfloat16 on CPU too, so the real
        # path (autocast, loss scaling, skipped overflows) runs and is tested without a GPU; it is no faster there
        # (float16 matmuls on CPU are slower than float32), which the log says
        note = (f"{autocast} autocast on CPU is for testing: slower than float32 (the speed-up is CUDA's)"
                if autocast and self.device.type == "cpu" else None)
        self.precision = {"autocast": autocast, "matmul": set_matmul_precision(self.device, settings.exact),
                          "note": note}
        self.reproducibility = reproducibility(self.device.type, settings.deterministic)
        if settings.deterministic and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's fixed-order workspace
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        torch.manual_seed(settings.random_seed)
        self.model = GPT2LMModel(config, lora, "reference" if settings.exact else "auto")
        self.model.load_weights(weights, settings.init_checkpoint or "initial weights")
        self.model.to(self.device)
        self.model.train()
        set_trainable(self.model, lora)
        self.trainable = trainable_state_dict(self.model)
        self.collective = Collective(self.ranks, self.device)
        with torch.no_grad():
            self.collective.broadcast(list(self.trainable.values()))
        self.optimizer = AdamW(self.trainable.items(), betas=(settings.adam_beta1, settings.adam_beta2),
                               eps=settings.adam_epsilon, weight_decay=settings.weight_decay,
                               correct_bias=settings.correct_bias)
        self.label_smooth = settings.label_smooth
        self.config, self.lora = config, lora

    def trainable_report(self):
        text = io.StringIO()
        report_trainable(self.model, self.config, self.lora, file=text)
        return text.getvalue().rstrip("\n")

    def seed(self, seed):
        torch.manual_seed(seed)

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def tensors(self, batch):
        """Input, target, mask and the mask's flat index (found on the host: model.mask_index) on the device.
        To a GPU through pinned memory, non_blocking: copying a pageable numpy buffer waits for the copy."""
        arrays = (batch.input, batch.target, batch.mask, mask_index(batch.mask))
        if self.device.type != "cuda":
            return tuple(torch.from_numpy(a) for a in arrays)
        return tuple(torch.from_numpy(a).pin_memory().to(self.device, non_blocking=True) for a in arrays)

    def train_batch(self, batch, weight, total=None):
        """Forward, then backward of loss * weight: gradients add up until `update`. Returns the loss.
        total: the mask sum of the global batch whose rows `batch` holds (several processes), else None."""
        inputs, target, mask, index = self.tensors(batch)
        if total is not None:
            total = torch.tensor(total, dtype=torch.float32, device=self.device)
        with self.autocast():
            hidden, _ = self.model(inputs)
            loss, _ = self.model.loss(hidden, target, mask, self.label_smooth, index, total)
        self.optimizer.backward(loss * weight)
        # the one host sync of a float32 step, after the backward is queued: the loop logs and checks the loss
        # of every batch (the divergence check names the step whose loss went non-finite)
        return loss.item()

    def update(self, lr, clip, loss_scale=None):
        """Sum the gradients over ranks, clip and take one AdamW step, then clear the gradients. With `loss_scale`
        (fp16) gradients are unscaled first and an overflowed update is skipped: returns False."""
        grads = list(self.gradients().values())
        if loss_scale is not None:
            for g in grads:
                g.div_(loss_scale)
            # one host sync for all gradients (the skip is decided here), as torch.amp.GradScaler's step has
            if not torch.stack([torch.isfinite(g).all() for g in grads]).all().item():
                self.optimizer.zero_grad()
                return False
        if clip > 0:
            clip_grad_norm(grads, clip)
        self.optimizer.step(lr)
        self.optimizer.zero_grad()
        return True

    @torch.no_grad()
    def eval_losses(self, batches):
        """Per-batch mean loss without label smoothing, in eval mode (no LoRA dropout)."""
        self.model.eval()
        losses = []
        for batch in batches:
            inputs, target, mask, index = self.tensors(batch)
            with self.autocast():
                hidden, _ = self.model(inputs)
                loss, _ = self.model.loss(hidden, target, mask, index=index)
            losses.append(loss.item())
        self.model.train()
        return losses

    def gradients(self):
        """{name: gradient} of the trainable parameters (all have one after a batch), summed over ranks in place."""
        grads = {name: p.grad for name, p in self.trainable.items() if p.grad is not None}
        return dict(zip(grads, self.collective.summed(list(grads.values()))))

    def trainable_arrays(self):
        return self.model.numpy_weights(self.trainable)

    def state(self):
        """The arrays of a resumable state. With several processes (every rank calls it) the gradient accumulated
        so far is summed into rank 0's and cleared on the others: the next update sums to the same."""
        grads = {n: g.detach().cpu().numpy().copy() for n, g in self.gradients().items()}
        if not self.ranks.is_main:
            self.optimizer.zero_grad()
        return {"param": self.trainable_arrays(), "optim": self.optimizer.state_arrays(), "grad": grads}

    def load_state(self, groups, source):
        """Restore `state()`: trainable weights, optimizer moments and any gradients accumulated so far."""
        shapes = {n: tuple(p.shape) for n, p in self.trainable.items()}
        check_shapes(shapes, {n: v.shape for n, v in groups["param"].items()}, source)
        if groups["grad"]:
            check_shapes(shapes, {n: v.shape for n, v in groups["grad"].items()}, source)
        with torch.no_grad():
            for name, param in self.trainable.items():
                param.copy_(torch.from_numpy(np.asarray(groups["param"][name], dtype=np.float32)))
        self.optimizer.load_state_arrays(groups["optim"], source)
        for name, grad in groups["grad"].items():
            self.trainable[name].grad = torch.from_numpy(np.asarray(grad, dtype=np.float32)).to(self.device)


if __name__ == "__main__":
    main(TrainEngine)
