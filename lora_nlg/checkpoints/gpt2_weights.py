"""GPT-2 weights under canonical names, from any file layout: Hugging Face, OpenAI/TF-converted, microsoft/LoRA, ours.

Canonical names are the OpenAI layout (`wte.weight`, `h.0.attn.c_attn.weight`, ...): prefixes such as
`transformer.` are stripped, `.g/.b/.w` suffixes renamed, causal-mask buffers dropped and a tied LM
head checked against `wte.weight`; the result is checked against the expected shapes.
"""
import os

import numpy as np

from lora_nlg.checkpoints.tensor_files import check_shapes, read_tensors
from lora_nlg.model.config import param_shapes
from lora_nlg.util.errors import CheckpointError

NAME_PREFIXES = ("module.transformer.", "transformer.", "module.")
# TF-converted GPT-2 files name LayerNorm / Conv1D tensors .g / .b / .w (as microsoft/LoRA's load_weight maps)
SUFFIX_RENAMES = {".g": ".weight", ".b": ".bias", ".w": ".weight"}
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights
TIED_HEADS = ("lm_head.weight", "lm_head.decoder.weight")  # copies of wte.weight


def canonical_name(name):
    """Checkpoint key -> canonical key: strips module./transformer. prefixes, renames .g/.b/.w suffixes."""
    for prefix in NAME_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    for old, new in SUFFIX_RENAMES.items():
        if name.endswith(old):
            name = name[: -len(old)] + new
    return name


def canonical_tensors(tensors, expected_shapes, path):
    """Map raw checkpoint tensors to canonical names, drop buffers and the tied head, check, cast to float32."""
    renamed, origin = {}, {}
    for name, value in tensors.items():
        new = canonical_name(name)
        if new in renamed:
            raise CheckpointError(path, f"keys {origin[new]!r} and {name!r} both map to {new!r}")
        renamed[new], origin[new] = value, name
    for name in [n for n in renamed if n.endswith(BUFFER_SUFFIXES)]:
        del renamed[name]
    for head in TIED_HEADS:
        if head in renamed:
            _check_tied_head(renamed.pop(head), renamed.get("wte.weight"), head, path)
    check_shapes(expected_shapes, {name: value.shape for name, value in renamed.items()}, path)
    return {name: np.ascontiguousarray(renamed[name], dtype=np.float32) for name in expected_shapes}


def _check_tied_head(head, wte, name, path):
    """The LM head is tied to wte: a head that differs would be silently lost, so it is an error."""
    if wte is not None and (head.shape != wte.shape or not np.array_equal(head, wte)):
        raise CheckpointError(path, f"{name} differs from wte.weight (an untied LM head is not supported)")


def load_gpt2_weights(path, config):
    """Canonical float32 GPT-2 weights from any supported file or directory (HF, OpenAI, microsoft/LoRA, ours)."""
    return canonical_tensors(read_tensors(path), param_shapes(config), os.fspath(path))
