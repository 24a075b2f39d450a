"""Fine-tune GPT-2 with LoRA: the Jittor tensor work under the shared loop of lora_nlg.train.loop.

Flags (microsoft/LoRA's, defaults = its README E2E command) are in lora_nlg.train.cli, the loop,
logs and resumable state in lora_nlg; this file only runs the model, gradients and optimizer.

The Jittor mirror of NLG_pytorch/src/gpt2_ft.py: gradients live in `optimizer.grads` (Jittor Vars
carry no `.grad`). Mixed precision is Jittor's automatic one (`auto_mixed_precision_level` 5: float16
products, float32 reductions, float32 weights), which has no bfloat16 mode: --bf16 is refused with that reason.

    cd NLG_jittor && python src/gpt2_ft.py --train_data ../data/e2e/sampled_18pct/train.jsonl \\
        --valid_data ../data/e2e/sampled_18pct/valid.jsonl --work_dir ../trained_models/e2e ...
"""
import contextlib
import io

import numpy as np

from distributed import Collective
from jittor_env import jt
from lora import report_trainable, set_trainable, trainable_state_dict
from lora_nlg.checkpoints.tensor_files import check_shapes
from lora_nlg.train.cli import TrainConfigError
from lora_nlg.train.loop import main
from lora_nlg.util.flags import reproducibility
from model import GPT2LMModel, mask_index, pick_device, set_matmul_precision
from optim import AdamW, clip_grad_norm

FP16_AMP_LEVEL = 5  # Jittor's autocast: float16 wherever an op may be, reductions and exp/log in float32


class TrainEngine:
    """Model, trainable parameters and AdamW of one run on one device (the interface: lora_nlg.train.loop).

    `settings`: the flags it needs, a lora_nlg.train.cli.EngineSettings (not the argparse Namespace)."""
    framework = "jittor"

    def __init__(self, config, lora, weights, settings):
        self.ranks = settings.ranks
        self.device = pick_device(settings.device, self.ranks)
        self.amp_level = FP16_AMP_LEVEL if settings.fp16 else None
        autocast = "float16" if settings.fp16 else None
        if settings.bf16:
            raise TrainConfigError("--bf16: Jittor's automatic mixed precision computes in float16 only; "
                                   "use --fp16 (or the PyTorch tree for bfloat16)")
        # --fp16 on CPU is allowed, not refused: Jittor's automatic mixed precision runs on CPU too (float16 CPU
        # kernels, compiled on first use), so the real path (autocast, loss scaling, skipped overflows) runs and is
        # tested without a GPU; it is no faster there, which the log says. Except with LoRA dropout: jt.nn.Dropout
        # compares a float16 jt.random with its float32 p, and Jittor 1.3's CPU float16 type makes that `>`
        # ambiguous, so the fused kernel does not compile (g++ error, then a RuntimeError at the first backward)
        if autocast and self.device == "cpu" and lora.r > 0 and lora.dropout > 0:
            raise TrainConfigError(f"--fp16 on CPU: Jittor's float16 CPU kernels do not compile LoRA dropout "
                                   f"(--lora_dropout {lora.dropout:g}); add --lora_dropout 0, or run on CUDA")
        note = (f"{autocast} autocast on CPU is for testing: slower than float32 (the speed-up is CUDA's)"
                if autocast and self.device == "cpu" else None)
        exact = settings.exact or settings.fp16  # TF32 off under --fp16: model.set_matmul_precision says why
        self.precision = {"autocast": autocast, "matmul": set_matmul_precision(self.device, exact),
                          "note": note}
        self.reproducibility = reproducibility(self.device, settings.deterministic)
        if settings.deterministic and self.device == "cuda":
            raise TrainConfigError("--deterministic: Jittor 1.3.11 has no deterministic mode for its CUDA kernels; "
                                   "use the PyTorch tree for a bit-reproducible CUDA run")
        jt.set_global_seed(settings.random_seed, different_seed_for_mpi=False)  # (the loop seeds each rank: step_seed)
        self.model = GPT2LMModel(config, lora, "reference" if settings.exact else "auto")
        self.model.load_weights(weights, settings.init_checkpoint or "initial weights")
        self.model.train()
        set_trainable(self.model, lora)
        self.trainable = trainable_state_dict(self.model)
        self.collective = Collective(self.ranks, self.device)
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
        jt.set_global_seed(seed, different_seed_for_mpi=False)

    def autocast(self):
        if self.amp_level is None:
            return contextlib.nullcontext()
        return jt.flag_scope(auto_mixed_precision_level=self.amp_level)

    def tensors(self, batch):
        """Input, target, mask and the mask's flat index (found on the host: model.mask_index) as Vars.
        Jittor copies them to the device when the graph runs, without a host sync."""
        arrays = (batch.input, batch.target, batch.mask, mask_index(batch.mask))
        return tuple(jt.array(a) for a in arrays)

    def train_batch(self, batch, weight, total=None):
        """Forward, then backward of loss * weight: gradients add up until `update`. Returns the loss.
        total: the mask sum of the global batch whose rows `batch` holds (several processes), else None."""
        inputs, target, mask, index = self.tensors(batch)
        if total is not None:
            total = jt.array(np.float32(total))
        with self.autocast():
            hidden, _ = self.model(inputs)
            loss, _ = self.model.loss(hidden, target, mask, self.label_smooth, index, total)
        self.optimizer.backward(loss * weight)
        # the one host read of a float32 step, after the backward ran: the loop logs and checks the loss
        # of every batch (the divergence check names the step whose loss went non-finite)
        return loss.item()

    def update(self, lr, clip, loss_scale=None):
        """Sum the gradients over ranks, clip and take one AdamW step, then clear the gradients. With `loss_scale`
        (fp16) gradients are unscaled first (and made float32) and an overflowed update is skipped: returns False."""
        grads = self.optimizer.grads = self.gradients()
        if loss_scale is not None:
            for name, g in grads.items():
                grads[name] = g.float32() / loss_scale
            # one host read for all gradients (the skip is decided here), as torch.amp.GradScaler's step has
            if not jt.stack([jt.isfinite(g).all() for g in grads.values()]).all().item():
                self.optimizer.zero_grad()
                return False
        if clip > 0:
            clip_grad_norm(grads.values(), clip)
        self.optimizer.step(lr)
        self.optimizer.zero_grad()
        return True

    @jt.no_grad()
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
        """{name: gradient} of the trainable parameters (all have one after a batch), summed over ranks."""
        grads = self.optimizer.grads
        return dict(zip(grads, self.collective.summed(list(grads.values()))))

    def trainable_arrays(self):
        return self.model.numpy_weights(self.trainable)

    def state(self):
        """The arrays of a resumable state. With several processes (every rank calls it) the gradient accumulated
        so far is summed into rank 0's and cleared on the others: the next update sums to the same."""
        self.optimizer.grads = self.gradients()
        grads = {n: g.numpy().copy() for n, g in self.optimizer.grads.items()}
        if not self.ranks.is_main:
            self.optimizer.zero_grad()
        return {"param": self.trainable_arrays(), "optim": self.optimizer.state_arrays(), "grad": grads}

    def load_state(self, groups, source):
        """Restore `state()`: trainable weights, optimizer moments and any gradients accumulated so far."""
        shapes = {n: tuple(p.shape) for n, p in self.trainable.items()}
        check_shapes(shapes, {n: v.shape for n, v in groups["param"].items()}, source)
        if groups["grad"]:
            check_shapes(shapes, {n: v.shape for n, v in groups["grad"].items()}, source)
        for name, param in self.trainable.items():  # Var.update detaches by itself: no jt.no_grad (it would freeze)
            param.update(jt.array(np.asarray(groups["param"][name], dtype=np.float32)))
        self.optimizer.load_state_arrays(groups["optim"], source)
        self.optimizer.grads = {name: jt.array(np.asarray(grad, dtype=np.float32))
                                for name, grad in groups["grad"].items()}


if __name__ == "__main__":
    main(TrainEngine)
