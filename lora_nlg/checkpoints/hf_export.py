"""Write GPT-2 weights as a Hugging Face model folder: `model.safetensors` + `config.json`.

The layout of the `gpt2*` models on the Hub (`transformer.`-prefixed keys, no separate LM head:
it is tied to `wte`), so a base made here (the cpu demo's) is read like a downloaded GPT-2 by both
trees (lora_nlg.checkpoints), and by `transformers.GPT2LMHeadModel.from_pretrained`.
"""
import os

from lora_nlg.checkpoints.tensor_files import check_shapes, save_safetensors
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.model.config import param_shapes
from lora_nlg.util.files import write_json

PREFIX = "transformer."


def hf_config(config):
    """config.json of a GPT2LMHeadModel with this shape (no dropout: the reference model uses none)."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": config.vocab_size, "n_positions": config.n_positions, "n_ctx": config.n_positions,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head,
        "layer_norm_epsilon": config.layer_norm_epsilon, "initializer_range": 0.02,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "bos_token_id": EOS_ID, "eos_token_id": EOS_ID, "tie_word_embeddings": True,
    }


def write_hf_gpt2(folder, weights, config):
    """Canonical GPT-2 weights (every one of them) -> folder/model.safetensors + config.json."""
    check_shapes(param_shapes(config), {name: value.shape for name, value in weights.items()}, folder)
    save_safetensors(os.path.join(folder, "model.safetensors"),
                     {PREFIX + name: value for name, value in weights.items()}, metadata={"format": "pt"})
    write_json(os.path.join(folder, "config.json"), hf_config(config))
    return folder
