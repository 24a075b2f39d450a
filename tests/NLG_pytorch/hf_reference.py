"""Random small GPT-2 weights and the Hugging Face model holding them: the reference for parity tests.

transformers is a test-only dependency of the torch venv; it never enters the project's code.
"""
import numpy as np
import torch
from transformers import GPT2Config as HFConfig
from transformers import GPT2LMHeadModel

from lora_nlg.model.config import GPT2Config
from lora_nlg.model.init_weights import init_gpt2_weights

SMALL = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64)


def random_weights(config=SMALL, seed=0):
    """GPT-2 init with random biases and LayerNorm gains too, so every term of the forward is exercised,
    and embeddings 10x larger than GPT-2's init, so logits are O(1) rather than O(0.1)."""
    weights = init_gpt2_weights(config, seed)
    for name in ("wte.weight", "wpe.weight"):
        weights[name] = weights[name] * np.float32(10.0)
    rng = np.random.default_rng(seed + 1)
    for name, w in weights.items():
        if name.endswith(".bias"):
            weights[name] = rng.normal(0.0, 0.1, w.shape).astype(np.float32)
        elif ".ln_" in name or name.startswith("ln_"):
            weights[name] = (1.0 + rng.normal(0.0, 0.2, w.shape)).astype(np.float32)
    return weights


def hf_model(weights, config=SMALL):
    """transformers.GPT2LMHeadModel (eager attention, no dropout) holding canonical `weights`."""
    hf_config = HFConfig(vocab_size=config.vocab_size, n_positions=config.n_positions, n_embd=config.n_embd,
                         n_layer=config.n_layer, n_head=config.n_head, layer_norm_epsilon=config.layer_norm_epsilon,
                         bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    model = GPT2LMHeadModel(hf_config).eval()
    state = {"transformer." + name: torch.from_numpy(w) for name, w in weights.items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state, strict=True)
    return model
