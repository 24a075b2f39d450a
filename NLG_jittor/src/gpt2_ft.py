"""Fine-tune GPT-2 with LoRA: the Jittor tensor work under the shared loop of lora_nlg.train.loop.

Flags (microsoft/LoRA's, defaults = its README E2E command) are in lora_nlg.train.cli, the loop,
logs and resumable state in lora_nlg; this file only runs the model, gradients and optimizer.
The Jittor mirror of NLG_pytorch/src/gpt2_ft.py: gradients live in `optimizer.grads` (Jittor Vars
carry no `.grad`), so `optimizer.backward(loss)` stands where torch has `loss.backward()`. Mixed
precision is Jittor's automatic one (`auto_mixed_precision_level` 5: float16 products, float32
reductions, float32 weights), which has no bfloat16 mode: --bf16 is refused with that reason.

    cd NLG_jittor && python src/gpt2_ft.py --train_data ../data/e2e/sampled_18pct/train.jsonl \\
        --valid_data ../data/e2e/sampled_18pct/valid.jsonl --work_dir ../trained_models/e2e ...
"""
import contextlib
import io

import numpy as np

from jittor_env import jt
from lora import report_trainable, set_trainable, trainable_state_dict
from lora_nlg.checkpoints.tensor_files import check_shapes
from lora_nlg.train.cli import TrainConfigError
from lora_nlg.train.loop import main
from model import GPT2LMModel
from optim import AdamW, clip_grad_norm

FP16_AMP_LEVEL = 5  # Jittor's autocast: float16 wherever an op may be, reductions and exp/log in float32


def pick_device(name):
    """`auto` is cuda when Jittor sees a GPU, else cpu; asking for cuda without one is an error.
    Jittor runs every Var on one global device (jt.flags.use_cuda), chosen here."""
    if name == "auto":
        name = "cuda" if jt.has_cuda else "cpu"
    if name.startswith("cuda") and not jt.has_cuda:
        raise TrainConfigError(f"--device {name}: Jittor sees no CUDA device")
    if name.startswith("cuda:") and name != "cuda:0":
        raise TrainConfigError(f"--device {name}: Jittor uses the first visible GPU; "
                               f"run with CUDA_VISIBLE_DEVICES={name[5:]} and --device cuda")
    jt.flags.use_cuda = int(name.startswith("cuda"))
    return "cuda" if name.startswith("cuda") else "cpu"


class TrainEngine:
    """Model, trainable parameters and AdamW of one run on one device (the interface: lora_nlg.train.loop)."""
    framework = "jittor"

    def __init__(self, config, lora, weights, args):
        self.device = pick_device(args.device)
        self.amp_level = FP16_AMP_LEVEL if args.fp16 else None
        if (args.fp16 or args.bf16) and self.device != "cuda":
            raise TrainConfigError("--fp16/--bf16 autocast runs on CUDA only; on CPU train in float32 (drop the flag)")
        if args.bf16:
            raise TrainConfigError("--bf16: Jittor's automatic mixed precision computes in float16 only; "
                                   "use --fp16 (or the PyTorch tree for bfloat16)")
        jt.set_global_seed(args.random_seed)
        self.model = GPT2LMModel(config, lora)
        self.model.load_weights(weights, args.init_checkpoint or "initial weights")
        self.model.train()
        set_trainable(self.model, lora)
        self.trainable = trainable_state_dict(self.model)
        self.optimizer = AdamW(self.trainable.items(), betas=(args.adam_beta1, args.adam_beta2),
                               eps=args.adam_epsilon, weight_decay=args.weight_decay, correct_bias=args.correct_bias)
        self.label_smooth = args.label_smooth
        self.config, self.lora = config, lora

    def trainable_report(self):
        text = io.StringIO()
        report_trainable(self.model, self.config, self.lora, file=text)
        return text.getvalue().rstrip("\n")

    def seed(self, seed):
        jt.set_global_seed(seed)

    def autocast(self):
        if self.amp_level is None:
            return contextlib.nullcontext()
        return jt.flag_scope(auto_mixed_precision_level=self.amp_level)

    def tensors(self, batch):
        return jt.array(batch.input), jt.array(batch.target), jt.array(batch.mask)

    def train_batch(self, batch, weight):
        """Forward, then backward of loss * weight: gradients add up until `update`. Returns the loss."""
        inputs, target, mask = self.tensors(batch)
        with self.autocast():
            hidden, _ = self.model(inputs)
            loss, _ = self.model.loss(hidden, target, mask, self.label_smooth)
        self.optimizer.backward(loss * weight)
        return loss.item()

    def update(self, lr, clip, loss_scale=None):
        """Clip and take one AdamW step, then clear the gradients. With `loss_scale` (fp16) gradients are
        unscaled first (and made float32) and an overflowed update is skipped: returns False."""
        grads = self.optimizer.grads
        if loss_scale is not None:
            for name, g in grads.items():
                grads[name] = g.float32() / loss_scale
            if not all(bool(jt.isfinite(g).all().item()) for g in grads.values()):
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
            inputs, target, mask = self.tensors(batch)
            with self.autocast():
                hidden, _ = self.model(inputs)
                loss, _ = self.model.loss(hidden, target, mask)
            losses.append(loss.item())
        self.model.train()
        return losses

    def trainable_arrays(self):
        return self.model.numpy_weights(self.trainable)

    def state(self):
        grads = {n: g.numpy().copy() for n, g in self.optimizer.grads.items()}
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
