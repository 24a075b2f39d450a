"""Adapters: the trained tensors of a run plus what is needed to rebuild the model around them.

Framework-neutral, so either tree reads the other's: `<stem>.safetensors` holds the trained tensors
(the LoRA ones, or every weight when r == 0) under canonical names, and `<stem>.json` the model
config, card, LoRA config, step and framework. Writes are atomic.
"""
import os
from dataclasses import dataclass

from lora_nlg.checkpoints.gpt2_weights import canonical_tensors
from lora_nlg.checkpoints.tensor_files import check_shapes, read_json, read_tensors, save_safetensors
from lora_nlg.model.config import CardError, GPT2Config, LoRAConfig, trainable_shapes
from lora_nlg.util.errors import CheckpointError
from lora_nlg.util.files import write_json

ADAPTER_FORMAT = "lora_nlg-adapter-1"


@dataclass
class Adapter:
    """A trained adapter: canonical tensors plus what is needed to rebuild the model around them."""
    tensors: dict
    config: GPT2Config
    lora: LoRAConfig
    card: str
    step: int
    framework: str


def adapter_stem(path):
    """`run/model.10` from `run/model.10`, `run/model.10.json` or `run/model.10.safetensors`."""
    path = os.fspath(path)
    for suffix in (".json", ".safetensors"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def save_adapter(stem, tensors, config, lora, card, step, framework):
    """Write `<stem>.safetensors` (tensors) then `<stem>.json` (metadata); returns the stem."""
    stem = adapter_stem(stem)
    check_shapes(trainable_shapes(config, lora), {n: v.shape for n, v in tensors.items()}, stem + ".safetensors")
    save_safetensors(stem + ".safetensors", tensors)
    write_json(stem + ".json", {
        "format": ADAPTER_FORMAT, "card": card, "model": config.to_dict(), "lora": lora.to_dict(),
        "step": int(step), "framework": framework,
    })
    return stem


def load_adapter(path):
    """Read an adapter written by either tree; its tensors are checked against its own config."""
    stem = adapter_stem(path)
    meta = read_json(stem + ".json")
    if meta.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(stem + ".json", f"not an adapter file (format {meta.get('format')!r}, "
                                              f"expected {ADAPTER_FORMAT!r})")
    try:
        config = GPT2Config.from_dict(meta["model"])
        lora = LoRAConfig.from_dict(meta["lora"])
        card, step, framework = meta["card"], int(meta["step"]), meta["framework"]
    except (KeyError, TypeError, ValueError, CardError) as error:
        raise CheckpointError(stem + ".json", f"invalid adapter metadata ({error!r})") from None
    tensors = canonical_tensors(read_tensors(stem + ".safetensors"), trainable_shapes(config, lora),
                                stem + ".safetensors")
    return Adapter(tensors=tensors, config=config, lora=lora, card=card, step=step, framework=framework)
