"""Initial weights as numpy float32 dicts, so the PyTorch and Jittor models start from IDENTICAL values.

Models are built empty and then loaded from these dicts (or from a checkpoint); neither framework's
own random initialiser is ever used, which also keeps results independent of framework RNGs.
"""
import math

import numpy as np

from lora_nlg.model.config import lora_shapes, param_shapes

INIT_STD = 0.02
RESIDUAL_PROJECTIONS = (".attn.c_proj.weight", ".mlp.c_proj.weight")


def init_gpt2_weights(config, seed):
    """GPT-2 initialisation: N(0, 0.02) weights and embeddings, zero biases, LayerNorm gain 1 / bias 0.

    The two projections that write into the residual stream (attn.c_proj, mlp.c_proj) use the GPT-2
    paper's scaled init, std 0.02 / sqrt(2 * n_layer), as Hugging Face's GPT-2 does. microsoft/LoRA
    initialises them with plain 0.02, but always overwrites them with pretrained weights; this
    project pretrains from scratch (no GPT-2 weights can be downloaded), where the scaling matters.
    """
    rng = np.random.default_rng(seed)
    residual_std = INIT_STD / math.sqrt(2 * config.n_layer)
    weights = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(".bias"):
            weights[name] = np.zeros(shape, np.float32)
        elif name.startswith("ln_") or ".ln_" in name:
            weights[name] = np.ones(shape, np.float32)
        else:
            std = residual_std if name.endswith(RESIDUAL_PROJECTIONS) else INIT_STD
            weights[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    return weights


def init_lora_weights(config, lora, seed):
    """LoRA initialisation as loralib: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0 (so training starts at the base model).

    U(-1/sqrt(in), 1/sqrt(in)) is what kaiming_uniform_(a=sqrt(5)) gives on an [rows, in] matrix:
    gain sqrt(2 / (1 + 5)) times sqrt(3 / fan_in). Empty when r == 0 (full fine-tuning).
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in lora_shapes(config, lora).items():
        if name.endswith(".lora_A"):
            bound = np.float32(1.0 / math.sqrt(shape[1]))
            weights[name] = (rng.random(shape, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)) * bound
        else:
            weights[name] = np.zeros(shape, np.float32)
    return weights
