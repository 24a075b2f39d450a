"""The Hugging Face model holding given GPT-2 weights: the reference for parity tests.

The weights themselves (SMALL, random_weights) are framework-free and shared with the Jittor tests:
tests/alignment/fixtures.py. transformers is a test-only dependency of the torch venv; it never enters
the project's code.
"""
import torch
from transformers import GPT2Config as HFConfig
from transformers import GPT2LMHeadModel

from alignment.fixtures import SMALL


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
