"""Write GPT-2 weights as a Hugging Face model folder: `model.safetensors` + `config.json` (+ tokenizer files).

The layout of the `gpt2*` models on the Hub (`transformer.`-prefixed keys, no separate LM head:
it is tied to `wte`), so a base made here (the cpu demo's) is read like a downloaded GPT-2 by both
trees (lora_nlg.checkpoints), and by `transformers.GPT2LMHeadModel.from_pretrained`. Given the vocabulary
folder (encoder.json + vocab.bpe), the folder also gets GPT-2's tokenizer files, so that
`AutoTokenizer.from_pretrained` reads it too; `write_hf_merged` writes a base with an adapter folded in,
for tools that know nothing of LoRA.
"""
import os
import shutil

import numpy as np
from tokenizers import AddedToken, processors

from lora_nlg.checkpoints.peft_format import plain_loras
from lora_nlg.checkpoints.tensor_files import check_shapes, save_safetensors
from lora_nlg.data.tokenizer import EOS_ID, VOCAB_FILES, GPT2Tokenizer
from lora_nlg.model.config import param_shapes
from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import atomic_open, write_json

PREFIX = "transformer."
HF_VOCAB_FILES = ("vocab.json", "merges.txt")  # the Hub's names of encoder.json and vocab.bpe


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


def write_hf_gpt2(folder, weights, config, vocab_dir=None):
    """Canonical GPT-2 weights (every one of them) -> folder/model.safetensors + config.json, and the tokenizer
    files of `vocab_dir` (write_hf_tokenizer) when given."""
    check_shapes(param_shapes(config), {name: value.shape for name, value in weights.items()}, folder)
    if vocab_dir is not None:
        write_hf_tokenizer(folder, vocab_dir, config)
    save_safetensors(os.path.join(folder, "model.safetensors"),
                     {PREFIX + name: value for name, value in weights.items()}, metadata={"format": "pt"})
    write_json(os.path.join(folder, "config.json"), hf_config(config))
    return folder


def merged_weights(base, adapter):
    """Base weights with the adapter folded in, W + scale * (B @ A).T per LoRA module (summed in float64; the
    [in, out] Conv1D layout); an adapter with full weights (r = 0) replaces the base."""
    if adapter.lora.r == 0:
        return dict(adapter.tensors)
    check_shapes(param_shapes(adapter.config), {name: value.shape for name, value in base.items()}, "base weights")
    merged = dict(base)
    for module, (a, b, scale) in plain_loras(adapter.tensors, adapter.config, adapter.lora).items():
        name = module + ".weight"
        delta = scale * (b.astype(np.float64) @ a.astype(np.float64)).T
        merged[name] = (base[name].astype(np.float64) + delta).astype(np.float32)
    return merged


def write_hf_merged(folder, base, adapter, vocab_dir=None):
    """A base (canonical weights; None for a full-weights adapter) + an Adapter, merged, as a Hugging Face
    folder (write_hf_gpt2)."""
    return write_hf_gpt2(folder, merged_weights(base, adapter), adapter.config, vocab_dir)


def write_hf_tokenizer(folder, vocab_dir, config):
    """GPT-2's tokenizer files from encoder.json + vocab.bpe: vocab.json, merges.txt (copies), tokenizer.json
    (our byte-level BPE, lora_nlg.data.tokenizer, with <|endoftext|> as its special token, as on the Hub),
    tokenizer_config.json and special_tokens_map.json (bos = eos = unk = <|endoftext|>)."""
    tokenizer = GPT2Tokenizer(vocab_dir)
    if tokenizer.vocab_size != config.vocab_size:
        raise NLGError(f"{vocab_dir}: a vocabulary of {tokenizer.vocab_size} tokens, but the model has "
                       f"vocab_size {config.vocab_size}")
    backend = tokenizer.pipeline  # (this instance's own), so the file encodes exactly as we do
    eos = backend.id_to_token(EOS_ID)
    backend.add_special_tokens([AddedToken(eos, special=True, normalized=False)])
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only, as the Hub's gpt2
    os.makedirs(folder, exist_ok=True)
    for source, target in zip(VOCAB_FILES, HF_VOCAB_FILES):
        with open(os.path.join(vocab_dir, source), "rb") as f, atomic_open(os.path.join(folder, target), True) as out:
            shutil.copyfileobj(f, out)
    with atomic_open(os.path.join(folder, "tokenizer.json")) as f:
        f.write(backend.to_str())
    special = {"bos_token": eos, "eos_token": eos, "unk_token": eos}
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "GPT2Tokenizer", **special, "add_prefix_space": False, "errors": "replace",
        "model_max_length": config.n_positions,
    })
    write_json(os.path.join(folder, "special_tokens_map.json"), special)
