"""What the dataset pipelines run: the paper's settings per dataset and the three presets, in one table.

Paper settings (GPT-2 M) come from microsoft/LoRA's examples/NLG README and the paper's Table 11:
- training: batch 8, lr 2e-4, AdamW (beta2 0.999, bias correction), weight decay 0.01, linear
  schedule with 500 warm-up steps, 5 epochs, LoRA r=4, alpha 32, dropout 0.1 on q and v, label
  smoothing 0.1, seq_len 512, seed 110; DART uses weight decay, dropout and label smoothing 0.
- beam search: beam 10, no-repeat-ngram 4, at most 64 new tokens, EOS 50256 or 628 ("\\n\\n"),
  length penalty 0.8: the README's commands (E2E `b10p08r4`, WebNLG / DART `b10p08`). Table 11
  gives 0.9 for E2E; we follow the README, whose command produced the published E2E numbers.
- decode and score: E2E references grouped per input and scored by e2e-metrics; WebNLG / DART
  with 6 reference files, `--tokenize --lower`, GenerationEval `-nr 6 -m bleu,meteor,ter`, WebNLG
  on all / seen / unseen categories (the paper's three BLEU columns).
SQuAD v1.1 (the SQuAD project's task, not in the paper): its LoRA (r=8, alpha 16, dropout 0.1 on the
attention and feed-forward projections), 2 epochs; greedy answers of at most 32 tokens, stopped at a
newline; EM / F1 by eval/squad_eval.py (the official v1.1 evaluation).
Presets: `paper` = full data; `sampled` = the 18% stratified sample (what the prior reproduction
ran); both fine-tune a pretrained GPT-2 Medium. `cpu` = the demos for 2 CPU cores (E2E and SQuAD): a
small GPT-2 base pretrained here on non-E2E text (lora_nlg.data.pretrain_corpus), then LoRA on a sample.
"""
from dataclasses import dataclass, field

from lora_nlg.util.errors import NLGError

FRAMEWORKS = ("pytorch", "jittor")
PAPER_SEED = 110

PAPER_TRAIN = {
    "train_batch_size": 8, "valid_batch_size": 4, "grad_acc": 1, "seq_len": 512, "model_card": "gpt2.md",
    "clip": 0.0, "lr": 0.0002, "weight_decay": 0.01, "adam_beta2": 0.999, "scheduler": "linear",
    "warmup_step": 500, "max_epoch": 5, "save_interval": 1000, "lora_dim": 4, "lora_alpha": 32,
    "lora_dropout": 0.1, "label_smooth": 0.1, "random_seed": PAPER_SEED,
}
PAPER_BEAM = {
    "batch_size": 16, "seq_len": 512, "eval_len": 64, "beam": 10, "length_penalty": 0.8,
    "no_repeat_ngram_size": 4, "repetition_penalty": 1.0, "eos_token_id": 628,
}
GENERATION_METRICS = "bleu,meteor,ter"


@dataclass(frozen=True)
class Dataset:
    """How one dataset departs from the paper defaults, and how it is decoded and scored."""
    name: str
    train: dict = field(default_factory=dict)  # overrides of PAPER_TRAIN
    beam: dict = field(default_factory=dict)  # overrides of PAPER_BEAM
    decode: tuple = ()  # extra gpt2_decode.py flags
    subsets: tuple = ("all",)  # decode --filter subsets that get scored
    scorer: str = "generation"  # e2e: e2e-metrics; generation: GenerationEval; squad: EM / F1


SQUAD_LORA = {"lora_dim": 8, "lora_alpha": 16, "lora_dropout": 0.1, "lora_targets": "attn,mlp"}  # the SQuAD project's
SQUAD_GREEDY = {"beam": 1, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "eval_len": 32,
                "eos_token_id": (198, 628)}  # stop at "\n" and "\n\n" (and <|endoftext|>, always)

DATASETS = {
    "e2e": Dataset("e2e", scorer="e2e"),
    "webnlg": Dataset("webnlg", decode=("--ref_num", "6", "--tokenize", "--lower"), subsets=("all", "seen", "unseen")),
    "dart": Dataset("dart", train={"weight_decay": 0.0, "lora_dropout": 0.0, "label_smooth": 0.0},
                    decode=("--ref_num", "6", "--tokenize", "--lower")),
    "squad": Dataset("squad", train={**SQUAD_LORA, "max_epoch": 2}, beam=SQUAD_GREEDY, scorer="squad"),
}


@dataclass(frozen=True)
class Preset:
    name: str
    fraction: float  # data/prepare.py --fraction
    setup: str  # trained_models/<setup>/<dataset>/<framework>
    train: dict = field(default_factory=dict)  # overrides of the dataset's training flags
    beam: dict = field(default_factory=dict)  # overrides of the dataset's beam flags
    pretrained: str | None = "pretrained_checkpoints/gpt2-medium"  # default --init_checkpoint (None: built here)
    datasets: tuple = tuple(DATASETS)
    note: str = ""
    by_dataset: dict = field(default_factory=dict)  # dataset -> {"fraction", "train", "beam"} overriding the above
    zero_shot: bool = False  # also score the base alone: with a base built here, that shows what LoRA adds

    def builds_base(self, init_checkpoint):
        """Whether a run builds its base model (the cpu demo's): no pretrained default, and none given."""
        return self.pretrained is None and not init_checkpoint

    def fraction_of(self, dataset):
        return self.by_dataset.get(dataset, {}).get("fraction", self.fraction)

    def flags_for(self, dataset, stage):
        """The preset's `stage` ("train" / "beam") flags for `dataset`: the general ones, then its own."""
        return {**getattr(self, stage), **self.by_dataset.get(dataset, {}).get(stage, {})}


CPU_BASE_DIR = "pretrained_checkpoints/cpu_demo_base"  # HF layout, shared by both frameworks
# The cpu base: full training (lora_dim 0) of gpt2.tiny on data/prepare_corpus.py's text: 1,700 steps of
# 16 rows, ~1.9M tokens (~0.9M with a loss), about one pass; ~0.75 CPU-seconds a step on one core here.
CPU_PRETRAIN = {
    "model_card": "gpt2.tiny", "lora_dim": 0, "train_batch_size": 16, "valid_batch_size": 16, "seq_len": 256,
    "lr": 0.002, "weight_decay": 0.01, "adam_beta2": 0.999, "warmup_step": 100, "max_step": 1700,
    "label_smooth": 0.0, "clip": 1.0, "log_interval": 50, "eval_interval": 500, "save_interval": 1700,
    "random_seed": PAPER_SEED,
}

PRESETS = {
    "paper": Preset("paper", 1.0, "GPT2_M", note="full data, GPT-2 Medium, the paper's hyper-parameters"),
    "sampled": Preset("sampled", 0.18, "GPT2_M_sampled",
                      note="the 18% stratified sample, otherwise the paper's settings"),
    "cpu": Preset(
        "cpu", 0.18, "cpu_demo",
        # The SQuAD project's LoRA (r=8, alpha 16 on attention + MLP), one epoch (E2E: 977 steps), lr 5e-3. On
        # this 7M-parameter base the paper's q,v r=4 (8,192 weights) reached E2E BLEU 15-16 at lr 2e-3-1e-2;
        # attention + MLP r=8 (73,728) 38 (README, "CPU demo")
        train={"model_card": "gpt2.tiny", **SQUAD_LORA, "lr": 0.005, "warmup_step": 50, "max_epoch": 1,
               "log_interval": 50, "eval_interval": 1000, "save_interval": 1000},
        beam={"batch_size": 32},
        pretrained=None, datasets=("e2e", "squad"), zero_shot=True,
        note="2 CPU cores: gpt2.tiny pretrained here on WebNLG + E2E-free DART + SQuAD-train text, then LoRA on a "
             "sample",
        # SQuAD: 5% of the articles (~4,000 training questions), prompts cut to fit 384 tokens, one epoch
        by_dataset={"squad": {"fraction": 0.05, "train": {"seq_len": 384, "max_epoch": 1, "warmup_step": 50},
                              "beam": {"batch_size": 32, "seq_len": 384}}}),
}

# what the cpu preset cannot do honestly: its base has seen WebNLG and DART training text
CPU_ONLY_E2E = ("--preset cpu has demos for E2E and SQuAD only: its base model is pretrained on WebNLG and "
                "DART text, so it cannot be evaluated on {dataset}; use --preset sampled or paper with a "
                "pretrained GPT-2")


def get_preset(name, dataset):
    if name not in PRESETS:
        raise NLGError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    if dataset not in DATASETS:
        raise NLGError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    preset = PRESETS[name]
    if dataset not in preset.datasets:
        raise NLGError(CPU_ONLY_E2E.format(dataset=dataset))
    return preset


def data_variant(fraction):
    """data/prepare.py's default output folder name for a fraction."""
    return "full" if fraction == 1 else f"sampled_{round(fraction * 100, 6):g}pct"


def train_settings(dataset, preset):
    """gpt2_ft.py flags (name -> value) of a dataset under a preset."""
    return {**PAPER_TRAIN, **DATASETS[dataset].train, **PRESETS[preset].flags_for(dataset, "train")}


def beam_settings(dataset, preset):
    """gpt2_beam.py flags (name -> value) of a dataset under a preset."""
    return {**PAPER_BEAM, **DATASETS[dataset].beam, **PRESETS[preset].flags_for(dataset, "beam")}


def prepare_settings(dataset, preset):
    """data/prepare.py flags beyond --fraction / --seed: SQuAD cuts its prompts to the training seq_len,
    keeping room for the longest answer generated."""
    if dataset != "squad":
        return {}
    return {"seq_len": train_settings(dataset, preset)["seq_len"],
            "answer_tokens": beam_settings(dataset, preset)["eval_len"]}


def beam_label(settings):
    """The reference's prediction-file tag, e.g. b10p08r4 (beam 10, length penalty 0.8, no-repeat 4)."""
    penalty = f"{settings['length_penalty']:g}".replace(".", "")
    ngram = settings["no_repeat_ngram_size"]
    return f"b{settings['beam']}p{penalty}" + (f"r{ngram}" if ngram else "")


def as_flags(settings):
    """{name: value} -> ["--name", "value", ...] in the dict's order (True -> a bare flag, False/None dropped,
    a tuple -> the flag repeated once per item)."""
    argv = []
    for name, value in settings.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(f"--{name}")
            continue
        for item in value if isinstance(value, tuple) else [value]:
            argv += [f"--{name}", f"{item:g}" if isinstance(item, float) else str(item)]
    return argv
