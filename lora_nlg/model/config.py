"""GPT-2 model cards, the LoRA configuration, and the canonical parameter layout both trees share.

The layout is the original OpenAI GPT-2 one (no prefix; Conv1D weights stored [in, out], used as
`x @ W + b`). Shapes are listed here once, so the numpy initialiser, the checkpoint checks, the
trainable-parameter count and both framework models all agree on the same names and shapes.
"""
import argparse
import json
from dataclasses import asdict, dataclass

from lora_nlg.util.errors import NLGError

ATTN_SLOTS = ("q", "k", "v")  # the three equal output slices of the fused c_attn projection
LORA_TARGETS = ATTN_SLOTS + ("o", "fc", "proj")
TARGET_ALIASES = {"attn": ("q", "k", "v", "o"), "mlp": ("fc", "proj")}
DEFAULT_TARGETS = "q,v"
BLOCK_LAYERS = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")  # state-dict order
# projection (name inside a block) -> the LoRA targets that name its output slices, in order
LAYER_SLOTS = {
    "attn.c_attn": ATTN_SLOTS,
    "attn.c_proj": ("o",),
    "mlp.c_fc": ("fc",),
    "mlp.c_proj": ("proj",),
}


class CardError(NLGError):
    """An unknown card name or an inconsistent model / LoRA configuration."""


@dataclass(frozen=True)
class GPT2Config:
    """Shape of a GPT-2 model. The reference uses no dropout in the backbone, so there is none here."""
    n_embd: int
    n_layer: int
    n_head: int
    vocab_size: int = 50257
    n_positions: int = 1024
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise CardError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


CARDS = {
    "gpt2.tiny": GPT2Config(n_embd=128, n_layer=4, n_head=4),  # a CPU model for demos and tests
    "gpt2.sm": GPT2Config(n_embd=768, n_layer=12, n_head=12),
    "gpt2.md": GPT2Config(n_embd=1024, n_layer=24, n_head=16),
    "gpt2.lg": GPT2Config(n_embd=1280, n_layer=36, n_head=20),
}


HF_SHAPE_KEYS = ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions", "layer_norm_epsilon")
CARD_HELP = f"one of {', '.join(CARDS)}, or a Hugging Face GPT-2 config.json (any shape, e.g. distilgpt2's)"


def card_from_hf_config(path):
    """The GPT2Config of a Hugging Face GPT-2 `config.json`; what this model cannot be (another architecture,
    another MLP width or activation) is a CardError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except OSError as error:
        raise CardError(f"{path}: cannot read the model config ({error.strerror})") from None
    except ValueError as error:
        raise CardError(f"{path}: not a JSON model config ({error})") from None
    if not isinstance(values, dict) or values.get("model_type", "gpt2") != "gpt2":
        kind = values.get("model_type") if isinstance(values, dict) else type(values).__name__
        raise CardError(f"{path}: not a GPT-2 config (model_type {kind!r})")
    missing = [key for key in HF_SHAPE_KEYS[:5] if not isinstance(values.get(key), int)]
    if missing:
        raise CardError(f"{path}: no integer {', '.join(missing)} (a GPT-2 config.json has them)")
    if values.get("n_inner") not in (None, 4 * values["n_embd"]):
        raise CardError(f"{path}: n_inner {values['n_inner']} (this GPT-2 has an MLP of 4 x n_embd)")
    if values.get("activation_function", "gelu_new") != "gelu_new":
        raise CardError(f"{path}: activation {values['activation_function']!r} (this GPT-2 uses gelu_new)")
    return GPT2Config(**{key: values[key] for key in HF_SHAPE_KEYS if key in values})


def get_card(name):
    """The GPT2Config of a card name such as `gpt2.md`, or of a Hugging Face config.json path."""
    if name in CARDS:
        return CARDS[name]
    if name.endswith(".json"):
        return card_from_hf_config(name)
    raise CardError(f"unknown model card {name!r} (known: {', '.join(CARDS)}; or a Hugging Face config.json)")


def card_argument(name):
    """argparse `type` of --model_card: the name, once it names a card (else a usage error with the reason)."""
    try:
        get_card(name)
    except CardError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name


def parse_targets(text):
    """`--lora_targets` text -> tuple of targets in canonical order, e.g. "v,attn" -> (q, k, v, o)."""
    names = [part.strip() for part in text.split(",")]
    if not any(names):
        raise CardError(f"empty LoRA target list {text!r} (choose from {', '.join(LORA_TARGETS)}, attn, mlp)")
    if not all(names):
        raise CardError(f"LoRA target list {text!r} has an empty entry (a doubled or trailing comma)")
    chosen = set()
    for name in names:
        if name in TARGET_ALIASES:
            chosen.update(TARGET_ALIASES[name])
        elif name in LORA_TARGETS:
            chosen.add(name)
        else:
            raise CardError(f"unknown LoRA target {name!r} (choose from {', '.join(LORA_TARGETS)}, attn, mlp)")
    return tuple(t for t in LORA_TARGETS if t in chosen)


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA hyper-parameters; r, alpha and targets default to the paper's E2E recipe.

    r == 0 means full fine-tuning (no LoRA tensors, every weight trainable). `targets` may be given
    as text ("q,v", "attn", ...) or a sequence of names; it is stored as a canonical tuple.
    """
    r: int = 4
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple = ("q", "v")

    def __post_init__(self):
        if self.r < 0:
            raise CardError(f"LoRA rank r={self.r} must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise CardError(f"LoRA dropout {self.dropout} must be in [0, 1)")
        text = self.targets if isinstance(self.targets, str) else ",".join(self.targets)
        object.__setattr__(self, "targets", parse_targets(text))

    @property
    def scaling(self):
        """alpha / r, the factor on B @ A (0 when there is no LoRA)."""
        return self.alpha / self.r if self.r > 0 else 0.0

    def enabled_slots(self, layer):
        """Which output slices of a projection (a LAYER_SLOTS key) carry LoRA; all False when r == 0."""
        return tuple(self.r > 0 and target in self.targets for target in LAYER_SLOTS[layer])

    def to_dict(self):
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "targets": ",".join(self.targets)}

    @classmethod
    def from_dict(cls, values):
        return cls(r=values["r"], alpha=values["alpha"], dropout=values["dropout"], targets=values["targets"])


def projection_shapes(config):
    """Conv1D projection (name inside a block) -> (in, out) of its [in, out] weight."""
    d = config.n_embd
    return {"attn.c_attn": (d, 3 * d), "attn.c_proj": (d, d), "mlp.c_fc": (d, 4 * d), "mlp.c_proj": (4 * d, d)}


def param_shapes(config):
    """Canonical name -> shape of every GPT-2 parameter, in a fixed order (the LM head is tied to wte)."""
    d = config.n_embd
    shapes = {"wte.weight": (config.vocab_size, d), "wpe.weight": (config.n_positions, d)}
    projections = projection_shapes(config)
    for i in range(config.n_layer):
        for name in BLOCK_LAYERS:
            if name in projections:  # Conv1D: weight [in, out], bias [out]
                shapes[f"h.{i}.{name}.weight"] = projections[name]
                shapes[f"h.{i}.{name}.bias"] = (projections[name][1],)
            else:  # LayerNorm: gain and bias [n_embd]
                shapes[f"h.{i}.{name}.weight"] = (d,)
                shapes[f"h.{i}.{name}.bias"] = (d,)
    shapes["ln_f.weight"] = (d,)
    shapes["ln_f.bias"] = (d,)
    return shapes


def lora_shapes(config, lora):
    """Canonical name -> shape of every LoRA parameter (loralib's MergedLinear layout for the fused qkv).

    A projection with k enabled slices of width n_out / n_slots gets lora_A [r * k, in] and
    lora_B [n_out / n_slots * k, r]: block j of B (rows) pairs with block j of A and lands in the
    j-th enabled slice. With one slice this is the plain [r, in] / [out, r] layout.
    """
    shapes = {}
    for i in range(config.n_layer):
        for layer, (n_in, n_out) in projection_shapes(config).items():
            enabled = lora.enabled_slots(layer)
            k = sum(enabled)
            if k:
                shapes[f"h.{i}.{layer}.lora_A"] = (lora.r * k, n_in)
                shapes[f"h.{i}.{layer}.lora_B"] = (n_out // len(enabled) * k, lora.r)
    return shapes


def _numel(shape):
    n = 1
    for size in shape:
        n *= size
    return n


def count_parameters(shapes):
    """Total number of values in a name -> shape dict (plain int arithmetic, identical in both trees)."""
    return sum(_numel(shape) for shape in shapes.values())


def trainable_shapes(config, lora):
    """Name -> shape of what training updates: the LoRA tensors, or every weight when r == 0."""
    return param_shapes(config) if lora.r == 0 else lora_shapes(config, lora)


def count_trainable(config, lora):
    """Number of trainable parameters (GPT-2 M, r=4 on q,v: 393,216 as in the paper)."""
    return count_parameters(trainable_shapes(config, lora))
