"""The flags of gpt2_ft.py, defined once for both trees (so names, defaults and checks cannot drift).

Flag names are microsoft/LoRA's (`--adam_epislon` included, with `--adam_epsilon` as an alias), and
the defaults are its README's E2E command, i.e. the paper's GPT-2 M E2E recipe: batch 8, lr 2e-4,
weight decay 0.01, linear schedule with 500 warm-up steps, 5 epochs, LoRA r=4 / alpha 32 / dropout
0.1 on q and v, label smoothing 0.1, seq_len 512, seed 110, `--correct_bias` and `--adam_beta2 0.999`
(the optimizer's own default is 0.98, but the README command passes 0.999). `--correct_bias` is
therefore on by default; `--no_correct_bias` turns it off.
"""
import argparse
import os
from dataclasses import dataclass, fields
from typing import Optional

from lora_nlg.model.config import CARD_HELP, DEFAULT_TARGETS, CardError, card_argument, get_card, parse_targets
from lora_nlg.train.schedules import SCHEDULES
from lora_nlg.util.errors import NLGError
from lora_nlg.util.flags import DEVICE_PATTERN, EXACT_HELP
from lora_nlg.util.ranks import ONE_PROCESS, Ranks, add_local_rank

# flags that decide what training computes: a resumed run must use the same values (intervals,
# device, --exact, work_dir and the validation set only change what is logged or saved, or the last bits of
# the float32 arithmetic, not what is computed)
RESUME_SETTINGS = (
    "train_data", "train_batch_size", "grad_acc", "seq_len", "fixed_padding", "model_card",
    "init_checkpoint", "clip", "lr", "weight_decay", "correct_bias", "adam_beta1", "adam_beta2",
    "adam_epsilon", "scheduler", "warmup_step", "max_epoch", "lora_dim", "lora_alpha", "lora_dropout",
    "lora_targets", "label_smooth", "random_seed", "fp16", "bf16",
)
PATH_SETTINGS = ("train_data", "init_checkpoint")


class TrainConfigError(NLGError):
    """Flags this machine cannot run as given (e.g. --bf16 without a CUDA device)."""


@dataclass(frozen=True)
class EngineSettings:
    """The flags a TrainEngine (NLG_<framework>/src/gpt2_ft.py) reads, named as the flags; the loop keeps the rest.

    Built from the parsed flags by `engine_settings(args)`, so the engines never see the argparse Namespace.
    """
    device: str  # --device: auto, cpu, cuda or cuda:N (each tree's model.pick_device checks it exists)
    fp16: bool
    bf16: bool
    exact: bool  # --exact: no TF32 for float32 matmuls on CUDA (model.set_matmul_precision)
    deterministic: bool  # --deterministic: the framework's deterministic CUDA algorithms (CPU runs already are)
    random_seed: int  # the framework RNG's seed at start (LoRA dropout)
    init_checkpoint: Optional[str]  # names the source of the initial weights in shape errors
    adam_beta1: float
    adam_beta2: float
    adam_epsilon: float
    weight_decay: float
    correct_bias: bool
    label_smooth: float
    ranks: Ranks  # this process's place among the launched processes (lora_nlg.util.ranks)


def engine_settings(args, ranks=ONE_PROCESS):
    """The EngineSettings of parsed gpt2_ft.py flags, for the process `ranks` describes."""
    return EngineSettings(ranks=ranks, **{field.name: getattr(args, field.name) for field in fields(EngineSettings)
                                          if field.name != "ranks"})


def build_parser(framework):
    parser = argparse.ArgumentParser(
        prog="gpt2_ft.py", description=f"Fine-tune GPT-2 with LoRA on an encoded NLG dataset ({framework}).")
    data = parser.add_argument_group("data")
    data.add_argument("--train_data", required=True, help="encoded training jsonl (data/prepare.py output)")
    data.add_argument("--valid_data", required=True, help="encoded validation jsonl")
    data.add_argument("--train_batch_size", type=int, default=8)
    data.add_argument("--valid_batch_size", type=int, default=4)
    data.add_argument("--grad_acc", type=int, default=1, help="batches per optimizer update")
    data.add_argument("--seq_len", type=int, default=512, help="longest row; longer examples are cut")
    data.add_argument("--fixed_padding", action="store_true",
                      help="pad every row to seq_len as the reference does (default: pad each batch to its "
                           "longest row, rounded up to a multiple of 8)")

    model = parser.add_argument_group("model")
    model.add_argument("--model_card", default="gpt2.md", type=card_argument, help=CARD_HELP)
    model.add_argument("--init_checkpoint", default=None,
                       help="pretrained GPT-2 weights (any format lora_nlg.checkpoints reads); "
                            "default: random GPT-2 init from --random_seed")
    model.add_argument("--lora_dim", type=int, default=4, help="LoRA rank r; 0 = full fine-tuning")
    model.add_argument("--lora_alpha", type=float, default=32.0)
    model.add_argument("--lora_dropout", type=float, default=0.1)
    model.add_argument("--lora_targets", default=DEFAULT_TARGETS,
                       help="comma list of q,k,v,o,fc,proj (or attn, mlp)")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--lr", type=float, default=2e-4)
    optim.add_argument("--weight_decay", type=float, default=0.01)
    optim.add_argument("--correct_bias", dest="correct_bias", action="store_true", default=True,
                       help="Adam bias correction (on by default, as the README command passes it)")
    optim.add_argument("--no_correct_bias", dest="correct_bias", action="store_false")
    optim.add_argument("--adam_beta1", type=float, default=0.9)
    optim.add_argument("--adam_beta2", type=float, default=0.999,
                       help="the README E2E command's value (microsoft/LoRA's optimizer default is 0.98)")
    optim.add_argument("--adam_epislon", "--adam_epsilon", dest="adam_epsilon", type=float, default=1e-6)
    optim.add_argument("--clip", type=float, default=0.0, help="max global gradient norm; 0 = no clipping")
    optim.add_argument("--scheduler", default="linear", choices=SCHEDULES)
    optim.add_argument("--warmup_step", type=int, default=500)
    optim.add_argument("--max_epoch", type=int, default=5)
    optim.add_argument("--max_step", type=int, default=None,
                       help="stop after this many batches (default: max_epoch epochs); also the schedule's end")
    optim.add_argument("--label_smooth", type=float, default=0.1)

    run = parser.add_argument_group("run")
    run.add_argument("--work_dir", required=True, help="checkpoints, training state and logs go here")
    run.add_argument("--random_seed", type=int, default=110)
    run.add_argument("--log_interval", type=int, default=100)
    run.add_argument("--eval_interval", type=int, default=2000, help="also evaluated at each epoch end")
    run.add_argument("--save_interval", type=int, default=1000, help="also saved at each epoch end")
    restart = run.add_mutually_exclusive_group()
    restart.add_argument("--resume", action="store_true",
                         help="continue from <work_dir>/train_state.safetensors (same losses as an unbroken run)")
    restart.add_argument("--overwrite", action="store_true",
                         help="start over in a --work_dir that holds a resumable run (its state is deleted)")
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    precision = run.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true",
                           help="float16 autocast with dynamic loss scaling (for CUDA; on CPU slow, for tests)")
    precision.add_argument("--bf16", action="store_true",
                           help="bfloat16 autocast (PyTorch only; for CUDA, on CPU for tests)")
    run.add_argument("--exact", action="store_true", help=EXACT_HELP)
    run.add_argument("--deterministic", action="store_true",
                     help="on CUDA, the framework's deterministic algorithms (slower), so the same command gives the "
                          "same numbers; CPU runs are bit-reproducible without it")
    run.add_argument("--platform", default="local", choices=["local"], help="accepted for compatibility")
    add_local_rank(run)
    return parser


def parse_args(argv=None, framework="pytorch"):
    """Parsed and checked flags; a bad combination exits with a usage error (code 2)."""
    parser = build_parser(framework)
    args = parser.parse_args(argv)
    problems = [
        (args.train_batch_size < 1 or args.valid_batch_size < 1, "batch sizes must be >= 1"),
        (args.grad_acc < 1, "--grad_acc must be >= 1"),
        (args.seq_len < 2, "--seq_len must be >= 2"),
        (args.seq_len > get_card(args.model_card).n_positions,
         f"--seq_len {args.seq_len} exceeds {args.model_card}'s {get_card(args.model_card).n_positions} positions"),
        (min(args.log_interval, args.eval_interval, args.save_interval) < 1, "intervals must be >= 1"),
        (args.max_step is not None and args.max_step < 1, "--max_step must be >= 1"),
        (args.max_epoch is not None and args.max_epoch < 1, "--max_epoch must be >= 1"),
        (args.warmup_step < 0, "--warmup_step must be >= 0"),
        (args.lora_dim < 0, "--lora_dim must be >= 0"),
        (args.lora_dim > 0 and not args.lora_alpha > 0, "--lora_alpha must be > 0 (the LoRA update is scaled by "
                                                        "alpha / r: 0 would train nothing)"),
        (not args.lr > 0, "--lr must be > 0"),
        (args.weight_decay < 0, "--weight_decay must be >= 0"),
        (not (0.0 <= args.adam_beta1 < 1.0 and 0.0 <= args.adam_beta2 < 1.0), "--adam_beta1/2 must be in [0, 1)"),
        (not args.adam_epsilon > 0, "--adam_epsilon must be > 0"),
        (not 0.0 <= args.lora_dropout < 1.0, "--lora_dropout must be in [0, 1)"),
        (not 0.0 <= args.label_smooth < 1.0, "--label_smooth must be in [0, 1)"),
        (args.clip < 0, "--clip must be >= 0"),
        (not DEVICE_PATTERN.fullmatch(args.device), f"--device {args.device!r}: use auto, cpu, cuda or cuda:N"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    try:
        parse_targets(args.lora_targets)
    except CardError as error:
        parser.error(f"--lora_targets: {error}")
    return args


def resume_settings(args, max_step, processes=1):
    """The values a resumed run must share with the run that wrote the state (paths made absolute), the number
    of processes among them (each draws its own LoRA dropout masks)."""
    settings = {name: getattr(args, name) for name in RESUME_SETTINGS}
    settings["processes"] = processes
    for name in PATH_SETTINGS:
        if settings[name] is not None:
            settings[name] = os.path.abspath(settings[name])
    settings["max_step"] = max_step
    return settings
