"""Framework-free test inputs shared by the Jittor tests and the PyTorch reference script: numpy only.

Weights exercise every term of the forward: random biases and LayerNorm gains (GPT-2's init has 0
and 1 there), embeddings scaled up from GPT-2's init so logits are O(1) rather than O(0.1), and a
nonzero LoRA B so the LoRA branch changes the output and A gets a gradient.
"""
import numpy as np

from lora_nlg.data.batching import collate
from lora_nlg.model.config import GPT2Config
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights

SMALL = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64)  # compiles and runs fast


def random_weights(config=SMALL, seed=0, embedding_scale=10.0):
    """GPT-2 init from lora_nlg, with random biases / LayerNorm gains and embeddings * embedding_scale."""
    weights = init_gpt2_weights(config, seed)
    rng = np.random.default_rng(seed + 1)
    for name, w in weights.items():
        if name in ("wte.weight", "wpe.weight"):
            weights[name] = w * np.float32(embedding_scale)
        elif name.endswith(".bias"):
            weights[name] = rng.normal(0.0, 0.1, w.shape).astype(np.float32)
        elif ".ln_" in name or name.startswith("ln_"):
            weights[name] = (1.0 + rng.normal(0.0, 0.2, w.shape)).astype(np.float32)
    return weights


def lora_weights(config, lora, seed=0, b_std=0.05):
    """loralib's LoRA init from lora_nlg, with B ~ N(0, b_std) instead of 0 (b_std=0 keeps the zero B)."""
    rng = np.random.default_rng(seed + 2)
    return {name: rng.normal(0.0, b_std, w.shape).astype(np.float32) if name.endswith("lora_B") and b_std else w
            for name, w in init_lora_weights(config, lora, seed).items()}


def synthetic_batch(config=SMALL, n=4, seed=0, seq_len=64):
    """A training batch from lora_nlg.data.batching: n (context, completion) pairs of random token ids."""
    rng = np.random.default_rng(seed)
    examples = [(rng.integers(0, config.vocab_size, rng.integers(5, 16)).tolist(),
                 rng.integers(0, config.vocab_size, rng.integers(4, 11)).tolist()) for _ in range(n)]
    return collate(examples, list(range(n)), seq_len=seq_len)


def token_ids(shape, config=SMALL, seed=0):
    return np.random.default_rng(seed).integers(0, config.vocab_size, shape)
