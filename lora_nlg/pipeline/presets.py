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
ran); both fine-tune a pretrained GPT-2 Medium. `cpu` = the demos for 2 CPU cores, all four datasets: a
small GPT-2 base pretrained here on SQuAD-train paragraphs only (lora_nlg.data.pretrain_corpus), then LoRA
on a sample of each dataset, the zero-shot base beside it.
Variants (`--variant`): the same run with another adapter, the paper's comparison in miniature: `qv` (the
paper's LoRA, r=4 alpha 32 on q and v) and `full` (full fine-tuning, every weight trains).
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
    # what the summaries report: (scores.json key, label, factor to the paper's tables' scale); the first is the
    # dataset's main metric
    main_metrics: tuple = (("bleu", "BLEU", 1), ("meteor", "METEOR", 1), ("ter", "TER", 1))


SQUAD_LORA = {"lora_dim": 8, "lora_alpha": 16, "lora_dropout": 0.1, "lora_targets": "attn,mlp"}  # the SQuAD project's
SQUAD_GREEDY = {"beam": 1, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "eval_len": 32,
                "eos_token_id": (198, 628)}  # stop at "\n" and "\n\n" (and <|endoftext|>, always)

DATASETS = {
    "e2e": Dataset("e2e", scorer="e2e", main_metrics=(("BLEU", "BLEU", 100), ("NIST", "NIST", 1),
                                                      ("METEOR", "METEOR", 100), ("ROUGE_L", "ROUGE-L", 100),
                                                      ("CIDEr", "CIDEr", 1))),
    "webnlg": Dataset("webnlg", decode=("--ref_num", "6", "--tokenize", "--lower"), subsets=("all", "seen", "unseen"),
                      main_metrics=(("bleu", "BLEU all", 1), ("bleu_seen", "BLEU seen", 1),
                                    ("bleu_unseen", "BLEU unseen", 1), ("meteor", "METEOR all", 1),
                                    ("ter", "TER all", 1))),
    "dart": Dataset("dart", train={"weight_decay": 0.0, "lora_dropout": 0.0, "label_smooth": 0.0},
                    decode=("--ref_num", "6", "--tokenize", "--lower")),
    "squad": Dataset("squad", train={**SQUAD_LORA, "max_epoch": 2}, beam=SQUAD_GREEDY, scorer="squad",
                     main_metrics=(("f1", "F1", 1), ("exact_match", "EM", 1))),
}


@dataclass(frozen=True)
class Preset:
    name: str
    fraction: float  # data/prepare.py --fraction
    setup: str  # trained_models/<setup>/<dataset>/<framework>
    train: dict = field(default_factory=dict)  # overrides of the dataset's training flags
    beam: dict = field(default_factory=dict)  # overrides of the dataset's beam flags
    pretrained: str | None = "pretrained_checkpoints/gpt2-medium"  # default --init_checkpoint (None: built here)
    note: str = ""
    # dataset -> {"fraction", "train", "beam", "prepare"} overriding the above
    by_dataset: dict = field(default_factory=dict)
    zero_shot: bool = False  # also score the base alone: with a base built here, that shows what LoRA adds

    def builds_base(self, init_checkpoint):
        """Whether a run builds its base model (the cpu demo's): no pretrained default, and none given."""
        return self.pretrained is None and not init_checkpoint

    def fraction_of(self, dataset):
        return self.by_dataset.get(dataset, {}).get("fraction", self.fraction)

    def flags_for(self, dataset, stage):
        """The preset's `stage` ("train" / "beam" / "prepare") flags for `dataset`: the general ones, then its own."""
        return {**getattr(self, stage, {}), **self.by_dataset.get(dataset, {}).get(stage, {})}


CPU_BASE_DIR = "pretrained_checkpoints/cpu_demo_base"  # HF layout, shared by both frameworks and all datasets
# The cpu base: full training (lora_dim 0) of gpt2.tiny on data/prepare_corpus.py's keywords -> sentence records of
# SQuAD-train paragraphs, 2,000 steps of 16 (32,000 of the ~82,600 records), by the Jittor tree (0.25 s a step here,
# PyTorch's about twice that)
CPU_PRETRAIN = {
    "model_card": "gpt2.tiny", "lora_dim": 0, "train_batch_size": 16, "valid_batch_size": 16, "seq_len": 256,
    "lr": 0.003, "weight_decay": 0.01, "adam_beta2": 0.999, "warmup_step": 100, "max_step": 2000,
    "label_smooth": 0.0, "clip": 1.0, "log_interval": 100, "eval_interval": 1000, "save_interval": 2000,
    "random_seed": PAPER_SEED,
}
CPU_BASE_FRAMEWORK = "jittor"

PRESETS = {
    "paper": Preset("paper", 1.0, "GPT2_M", note="full data, GPT-2 Medium, the paper's hyper-parameters"),
    "sampled": Preset("sampled", 0.18, "GPT2_M_sampled",
                      note="the 18% stratified sample, otherwise the paper's settings"),
    "cpu": Preset(
        "cpu", 0.18, "cpu_demo",
        # The SQuAD project's LoRA (r=8, alpha 16 on attention + MLP), lr 5e-3, batch 8; the paper's q,v r=4 is the
        # `qv` variant
        train={"model_card": "gpt2.tiny", **SQUAD_LORA, "lr": 0.005, "warmup_step": 50, "max_epoch": 1,
               "log_interval": 50, "eval_interval": 1000, "save_interval": 1000},
        beam={"batch_size": 32},
        pretrained=None, zero_shot=True,
        note="2 CPU cores: gpt2.tiny pretrained here on keywords -> sentence records of SQuAD-train paragraphs only, "
             "then LoRA on a sample",
        by_dataset={
            "e2e": {"train": {"max_step": 800}},
            # 18% of WebNLG's inputs per category (train and test: seen and unseen categories both)
            "webnlg": {"train": {"max_epoch": 2}},
            # 6% of DART's inputs (train: a third of the offline 18% pool); the paper's LoRA dropout 0 over the
            # preset's adapter's 0.1 (its weight decay and label smoothing 0 hold already)
            "dart": {"fraction": 0.06, "train": {"lora_dropout": 0.0}},
            # SQuAD: 5% of the articles, each prompt a window of its paragraph around the first gold answer
            "squad": {"fraction": 0.05, "train": {"seq_len": 160, "warmup_step": 50},
                      "beam": {"batch_size": 32, "seq_len": 160}, "prepare": {"test_window": "answer"}}}),
}


@dataclass(frozen=True)
class Variant:
    """Another adapter for the same run: its training flags over the preset's, its label in the summaries."""
    name: str
    label: str
    train: dict = field(default_factory=dict)


VARIANTS = {
    "lora": Variant("lora", "LoRA"),  # the preset's own adapter
    "qv": Variant("qv", "LoRA q,v r=4", {"lora_dim": 4, "lora_alpha": 32, "lora_targets": "q,v"}),
    "full": Variant("full", "full fine-tuning", {"lora_dim": 0, "lora_dropout": 0.0, "lr": 0.001}),
}


def run_name(dataset, variant="lora"):
    """A run's name, which names its folder and figures: the dataset, then `_<variant>` unless it is LoRA."""
    return dataset if variant == "lora" else f"{dataset}_{variant}"


def split_run_name(name):
    """(dataset, variant) of a run_name."""
    dataset, _, variant = name.partition("_")
    return dataset, variant or "lora"


def get_preset(name, dataset):
    if name not in PRESETS:
        raise NLGError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    if dataset not in DATASETS:
        raise NLGError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    return PRESETS[name]


def data_variant(fraction):
    """data/prepare.py's default output folder name for a fraction."""
    return "full" if fraction == 1 else f"sampled_{round(fraction * 100, 6):g}pct"


def train_settings(dataset, preset, variant="lora"):
    """gpt2_ft.py flags (name -> value) of a dataset under a preset, with a variant's adapter."""
    return {**PAPER_TRAIN, **DATASETS[dataset].train, **PRESETS[preset].flags_for(dataset, "train"),
            **VARIANTS[variant].train}


def beam_settings(dataset, preset):
    """gpt2_beam.py flags (name -> value) of a dataset under a preset."""
    return {**PAPER_BEAM, **DATASETS[dataset].beam, **PRESETS[preset].flags_for(dataset, "beam")}


def prepare_settings(dataset, preset):
    """data/prepare.py flags beyond --fraction / --seed: SQuAD cuts its prompts to the training seq_len,
    keeping room for the longest answer generated."""
    if dataset != "squad":
        return {}
    return {"seq_len": train_settings(dataset, preset)["seq_len"],
            "answer_tokens": beam_settings(dataset, preset)["eval_len"],
            **PRESETS[preset].flags_for(dataset, "prepare")}


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
