"""The training loop of gpt2_ft.py, written once for both trees; each tree supplies only a TrainEngine.

What it computes follows microsoft/LoRA's gpt2_ft.py: `step` counts batches (train_step); the
gradients of --grad_acc batches (each loss divided by grad_acc) make one update, at steps that are
multiples of grad_acc; the schedule advances every batch, so the batch of step s uses
lr_at(s - 1); max_step defaults to max_epoch * batches per epoch; the validation loss is the
mean of the per-batch mean losses (no label smoothing). Beyond the reference it evaluates and saves
at each epoch end and at the last step too, keeps the best adapter (`model.best`), stops on a
non-finite loss, and resumes exactly (lora_nlg.train.state). Under --fp16 an update whose gradients
overflow is skipped, the loss scale halved, and both logged (an `overflow` line and event).

A training step reads back from the device only what the loop uses at once: its loss (a float, logged
and checked every batch, so a divergence names its step) and, under --fp16, whether all gradients are
finite (one value: the skip is decided on the host). tests/NLG_*/test_host_syncs.py list them.

Several processes (torchrun, mpirun) compute what one process computes (lora_nlg.util.ranks): each trains
its rows of the one-process batch with the global batch's loss normalisation, the engine sums the gradients
over ranks, validation batches are split between them and their losses summed, and rank 0 alone writes.

A TrainEngine (NLG_<framework>/src/gpt2_ft.py) does the tensor work:
    engine = TrainEngine(config, lora, weights, settings)  # model on settings.device, trainable marked, AdamW
                                                        # (settings = lora_nlg.train.cli.engine_settings(args))
    engine.framework                                    # "pytorch" / "jittor", written into adapters
    engine.collective                                   # sums over ranks (NLG_<framework>/src/distributed.py)
    engine.trainable_report()                           # the trainable-parameter line (count checked)
    engine.reproducibility                              # lora_nlg.util.flags.reproducibility's label
    engine.precision                                    # {"autocast": "float16"/"bfloat16"/None, "matmul":
                                                        #  lora_nlg.util.flags.matmul_precision's label, "note"}
    engine.seed(n)                                      # reseed the framework RNG (LoRA dropout)
    engine.train_batch(batch, weight, total) -> float   # forward, backward of loss * weight (grads add up);
                                                        # total: the global batch's mask sum (several ranks)
    engine.update(lr, clip, loss_scale) -> bool         # sum grads over ranks, clip, AdamW step, clear grads
                                                        # (False: fp16 overflow, the update skipped; the loop
                                                        # halves the scale, logs it)
    engine.eval_losses(batches) -> [float]              # per-batch losses, no dropout, no gradients
    engine.trainable_arrays() -> {name: ndarray}        # what an adapter stores
    engine.state() / engine.load_state(groups, source)  # {"param", "optim", "grad"} numpy groups; state() is
                                                        # called on every rank and sums the grads into rank 0's
"""
import contextlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from lora_nlg.checkpoints.adapter import save_adapter
from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights
from lora_nlg.data.batching import TrainBatches, eval_batches, load_encoded
from lora_nlg.model.config import LoRAConfig, count_parameters, count_trainable, get_card, lora_shapes, param_shapes
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.train.cli import TrainConfigError, engine_settings, parse_args, resume_settings
from lora_nlg.train.logs import SEPARATOR, TrainLog, echo_above_bar, perplexity, progress_bar, resume_line
from lora_nlg.train.schedules import lr_at
from lora_nlg.train.state import (
    STATE_FILE,
    LossScale,
    TrainState,
    check_settings,
    load_train_state,
    save_train_state,
    step_seed,
)
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.ranks import batch_rows, block, from_environment
from lora_nlg.util.work_dir import locked_work_dir

BEST_STEM = "model.best"


class TrainingDiverged(Exception):
    """A non-finite loss or weight. Training stops (exit code 1) and writes nothing after it."""


@dataclass
class IntervalMeter:
    """Sums over the batches since the last train line: the reference's AverageMeter plus speed."""
    batches: int = 0
    loss_sum: float = 0.0
    last_loss: float = 0.0
    seconds: float = 0.0
    real_tokens: int = 0
    padded_tokens: int = 0

    def add(self, loss, batch, seconds):
        self.batches += 1
        self.loss_sum += loss
        self.last_loss = loss
        self.seconds += seconds
        self.real_tokens += batch.n_real_tokens
        self.padded_tokens += batch.input.size

    def summary(self):
        avg = self.loss_sum / self.batches
        seconds = max(self.seconds, 1e-9)
        return {"loss": self.last_loss, "avg_loss": avg, "ppl": perplexity(avg),
                "ms_per_batch": 1000.0 * seconds / self.batches, "tokens_per_s": self.real_tokens / seconds,
                "real_tokens_per_batch": self.real_tokens / self.batches,
                "padded_tokens_per_batch": self.padded_tokens / self.batches}


def read_examples(path, vocab_size):
    examples = load_encoded(path, vocab_size)
    if not examples:
        raise NLGError(f"{path}: no examples")
    return examples


def initial_weights(args, config, lora):
    """Base weights from --init_checkpoint or the shared numpy init, plus the LoRA init (same in both trees)."""
    if args.init_checkpoint:
        base = load_gpt2_weights(args.init_checkpoint, config)
    else:
        base = init_gpt2_weights(config, args.random_seed)
    return {**base, **init_lora_weights(config, lora, args.random_seed)}


def precision_line(precision, scaler):
    """The start log's line on the arithmetic: autocast (and the fp16 loss scale) and how float32 matmuls run."""
    autocast = f"{precision['autocast']} autocast" if precision["autocast"] else "float32"
    scaled = f", dynamic loss scale {scaler.scale:g}" if scaler.enabled else ""
    return f"precision: {autocast}{scaled}; matmul precision: {precision['matmul']}"


def is_finished(state, max_step, max_epoch, batches_per_epoch):
    return state.step >= max_step or (
        max_epoch is not None and state.epoch >= max_epoch and state.batch >= batches_per_epoch)


class Run:
    """One gpt2_ft.py run: data, engine, state and log, and the loop over them."""

    def __init__(self, args, engine_class, ranks):
        self.args, self.ranks = args, ranks
        self.config = get_card(args.model_card)
        self.lora = LoRAConfig(r=args.lora_dim, alpha=args.lora_alpha, dropout=args.lora_dropout,
                               targets=args.lora_targets)
        # the batches of ONE process with all ranks' rows; each rank trains its own block of rows of each
        self.train_set = TrainBatches(read_examples(args.train_data, self.config.vocab_size),
                                      args.train_batch_size * ranks.size, args.seq_len, args.random_seed,
                                      fixed_length=args.fixed_padding)
        self.valid_examples = read_examples(args.valid_data, self.config.vocab_size)
        self.max_step = args.max_step or args.max_epoch * len(self.train_set)
        self.state_path = os.path.join(args.work_dir, STATE_FILE)
        settings = resume_settings(args, self.max_step, ranks.size)
        groups = None
        if not args.resume and not args.overwrite and os.path.exists(self.state_path):
            raise TrainConfigError(f"{self.state_path}: --work_dir holds a resumable run; --resume continues it, "
                                   f"--overwrite starts over and deletes it")
        if args.resume:
            self.state, groups = load_train_state(self.state_path)
            self.state.settings.setdefault("processes", 1)  # (states written before runs had several processes)
            check_settings(self.state.settings, settings, self.state_path)
        else:
            self.state = TrainState(settings=settings)
        self.engine = engine_class(self.config, self.lora, initial_weights(args, self.config, self.lora),
                                   engine_settings(args, ranks))
        if groups is not None:
            # the gradient accumulated so far (--grad_acc) is all ranks' sum, saved by rank 0 (Run.save)
            self.engine.load_state(groups if ranks.is_main else {**groups, "grad": {}}, self.state_path)
        self.state.framework = self.engine.framework
        self.meter = IntervalMeter(**self.state.meter)
        self.scaler = LossScale(**self.state.loss_scale) if self.state.loss_scale else LossScale(enabled=args.fp16)
        self.last_saved = self.state.step if args.resume else None
        self.log = TrainLog(args.work_dir, append=args.resume, echo=echo_above_bar, muted=not ranks.is_main)

    def log_start(self):
        args, state = self.args, self.state
        self.log.line("=" * 100)
        for name, value in vars(args).items():
            self.log.line(f"        - {name} : {value}")
        self.log.line("=" * 100)
        self.log.line(self.engine.trainable_report())
        precision = self.engine.precision
        self.log.line(precision_line(precision, self.scaler))
        if precision["note"]:
            self.log.line(f"note: {precision['note']}")
        self.log.line(f"reproducibility: {self.engine.reproducibility}")
        if self.ranks.size > 1:
            self.log.line(f"processes: {self.ranks.size} ({self.ranks.launcher}); global batch "
                          f"{args.train_batch_size * self.ranks.size} = {self.ranks.size} x {args.train_batch_size} "
                          f"rows, the batches of one process with batch {args.train_batch_size * self.ranks.size}")
        self.log.line(f"train: {len(self.train_set.examples)} examples, {len(self.train_set)} batches per epoch "
                      f"({self.train_set.n_truncated} cut to seq_len {args.seq_len}); "
                      f"valid: {len(self.valid_examples)} examples; max_step {self.max_step}")
        if self.train_set.n_without_targets:
            self.log.line(f"warning: {self.train_set.n_without_targets} training examples have no completion token "
                          f"within seq_len {args.seq_len} (the context fills it): they train on nothing")
        resume_step = state.step if args.resume else None
        fields = {"step": state.step, "epoch": state.epoch, "batch": state.batch, "resume_step": resume_step}
        if args.resume:
            self.log.line(resume_line(fields))
        elif os.path.exists(self.state_path) and self.ranks.is_main:
            os.remove(self.state_path)
            self.log.line(f"--overwrite: removed the previous run's {self.state_path}")
        self.log.event("start", framework=self.engine.framework, args=vars(args), max_step=self.max_step,
                       batches_per_epoch=len(self.train_set), train_examples=len(self.train_set.examples),
                       valid_examples=len(self.valid_examples), truncated=self.train_set.n_truncated,
                       without_targets=self.train_set.n_without_targets, reproducibility=self.engine.reproducibility,
                       precision={"autocast": precision["autocast"], "matmul": precision["matmul"],
                                  "loss_scale": self.scaler.scale if self.scaler.enabled else None},
                       processes=self.ranks.size, global_batch=args.train_batch_size * self.ranks.size,
                       trainable_params=count_trainable(self.config, self.lora),
                       total_params=count_parameters({**param_shapes(self.config),
                                                      **lora_shapes(self.config, self.lora)}),
                       **fields)

    def where(self):
        return {"step": self.state.step, "epoch": self.state.epoch}

    def diverged(self, what):
        saved = "none" if self.last_saved is None else f"model.{self.last_saved}"
        message = (f"training diverged: {what} at step {self.state.step} (epoch {self.state.epoch}, "
                   f"batch {self.state.batch}); nothing saved after it (last checkpoint: {saved})")
        self.log.event("diverged", message=message, **self.where())
        self.log.write_text(message)
        raise TrainingDiverged(message)

    def save_adapter(self, stem, tensors=None):
        """Write `<stem>.safetensors` + `.json` (rank 0; every rank checks, so all stop together): non-finite
        weights stop training instead of being saved. Returns the path (None on the other ranks)."""
        tensors = self.engine.trainable_arrays() if tensors is None else tensors
        bad = sorted(name for name, value in tensors.items() if not np.isfinite(value).all())
        if bad:
            self.diverged(f"non-finite weights ({', '.join(bad[:3])})")
        if not self.ranks.is_main:
            return None
        return save_adapter(os.path.join(self.args.work_dir, stem), tensors, self.config, self.lora,
                            self.args.model_card, self.state.step, self.engine.framework) + ".safetensors"

    def save(self):
        """Adapter model.<step> and the training state beside it. Every rank calls engine.state(), which sums
        the gradient accumulated so far into rank 0's (the others go on from zero: the next update's sum is the
        same), so the one state file holds all a resume needs."""
        groups = self.engine.state()
        path = self.save_adapter(f"model.{self.state.step}", groups["param"])
        if self.ranks.is_main:
            self.log.save(path, kind="checkpoint", **self.where())
            self.state.meter = asdict(self.meter)
            self.state.loss_scale = asdict(self.scaler)
            save_train_state(self.state_path, self.state, groups)
        self.last_saved = self.state.step

    def evaluate(self):
        args, state = self.args, self.state
        start = time.perf_counter()
        batches = list(eval_batches(self.valid_examples, args.valid_batch_size, args.seq_len,
                                    fixed_length=args.fixed_padding))
        mine = block(len(batches), self.ranks)  # each batch computed whole by one rank, the losses summed
        losses = np.zeros(len(batches))
        losses[mine.start:mine.stop] = self.engine.eval_losses(batches[mine.start:mine.stop])
        losses = self.engine.collective.sum_array(losses).tolist()
        elapsed = time.perf_counter() - start
        valid_loss = sum(losses) / len(losses)
        if not math.isfinite(valid_loss):
            self.diverged(f"non-finite validation loss {valid_loss}")
        state.n_evals += 1
        improved = state.best_loss is None or valid_loss < state.best_loss
        if improved:
            state.best_loss, state.best_step = valid_loss, state.step
        self.log.eval(eval=state.n_evals, time_s=elapsed, valid_loss=valid_loss, valid_ppl=perplexity(valid_loss),
                      best_ppl=perplexity(state.best_loss), best_step=state.best_step, **self.where())
        if improved:
            self.log.save(self.save_adapter(BEST_STEM), kind="best", **self.where())

    def train_step(self, batch):
        """One batch: forward and backward, and an update every grad_acc batches. Returns (loss, lr)."""
        args, state = self.args, self.state
        state.step += 1
        state.batch += 1
        self.engine.seed(step_seed(args.random_seed, state.step, self.ranks.rank))
        if self.ranks.size == 1:
            loss = self.engine.train_batch(batch, self.scaler.scale / args.grad_acc)
        else:  # this rank's rows, normalised by the whole batch: the ranks' losses add up to one process's
            loss = self.engine.train_batch(batch_rows(batch, self.ranks), self.scaler.scale / args.grad_acc,
                                           total=float(batch.mask.sum()))
            loss = float(self.engine.collective.sum_array([loss])[0])  # every rank: the same loss, same checks
        if not math.isfinite(loss):
            self.diverged(f"non-finite training loss {loss}")
        lr = lr_at(state.step - 1, args.lr, args.scheduler, args.warmup_step, self.max_step)
        if state.step % args.grad_acc == 0:
            scale = self.scaler.scale
            applied = self.engine.update(lr, args.clip, scale if self.scaler.enabled else None)
            self.scaler.update(overflowed=not applied)
            if not applied:
                self.log.overflow(previous_scale=scale, scale=self.scaler.scale, **self.where())
        return loss, lr

    def after_step(self, lr):
        """Log, evaluate and save as due; evaluation and saving also at each epoch end and the last step."""
        args, state = self.args, self.state
        if state.step % args.log_interval == 0:
            self.log.train(batch=state.batch, lr=lr, **self.meter.summary(), **self.where())
            self.meter = IntervalMeter()
        boundary = state.batch == len(self.train_set) or state.step == self.max_step
        if state.step % args.eval_interval == 0 or boundary:
            self.evaluate()
        if state.step % args.save_interval == 0 or boundary:
            self.save()

    def train(self):
        args, state = self.args, self.state
        n_batches = len(self.train_set)
        clock = time.perf_counter()  # ms/batch and tokens/s count training only, not evaluation or saving
        with progress_bar(self.max_step, state.step, shown=self.ranks.is_main) as bar:
            while not is_finished(state, self.max_step, args.max_epoch, n_batches):
                if state.batch == n_batches:
                    state.epoch, state.batch = state.epoch + 1, 0
                for batch in self.train_set.epoch(state.epoch, state.batch):
                    loss, lr = self.train_step(batch)
                    self.meter.add(loss, batch, time.perf_counter() - clock)
                    bar.update(1)
                    self.after_step(lr)
                    if is_finished(state, self.max_step, args.max_epoch, n_batches):
                        break
                    clock = time.perf_counter()
        self.log.line(SEPARATOR)
        self.log.line("End of training")
        self.log.event("end", best_step=state.best_step, best_loss=state.best_loss, **self.where())


def train(args, engine_class):
    ranks = from_environment(local_rank_flag=args.local_rank)
    with locked_work_dir(args.work_dir) if ranks.is_main else contextlib.nullcontext():  # rank 0: the one writer
        run = Run(args, engine_class, ranks)
        try:
            run.log_start()
            run.train()
        except KeyboardInterrupt:
            saved = "nothing saved yet" if run.last_saved is None else f"--resume continues from step {run.last_saved}"
            run.log.line(f"{SEPARATOR}\nExiting from training early at step {run.state.step} ({saved})")
            raise SystemExit(130) from None
        finally:
            run.log.close()
            run.engine.collective.close()


def main(engine_class, argv=None):
    """gpt2_ft.py: bad input -> `error: ...` and exit 2 (run_cli); divergence -> `error: ...` and exit 1."""
    try:
        run_cli(lambda a: train(parse_args(a, engine_class.framework), engine_class), argv)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
