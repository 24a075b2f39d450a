"""PyTorch side of the training alignment tests: adapters trained by either tree, loaded in torch (run in .venv-torch).

    PYTHONPATH=tests .venv-torch/bin/python tests/alignment/torch_train_reference.py --valid VALID.jsonl --out OUT.npz \
        STEM [STEM ...]

For adapter i (at `STEM`, written by either framework's gpt2_ft.py) OUT.npz holds `weights.<i>.<name>`, the
adapter tensors as the torch model holds them after loading, and `logits.<i>`, the logits of the
base weights gpt2_ft.py starts from (the shared numpy init of the adapter's card and --seed) plus the
adapter, in eval mode, on the first --rows examples of VALID (lora_nlg batching, as in training).
"""
import argparse

import numpy as np
import torch

from alignment.train_runs import logits_batch
from lora_nlg.checkpoints.adapter import load_adapter
from lora_nlg.model.init_weights import init_gpt2_weights
from model import GPT2LMModel


def adapter_in_torch(stem, seed, batch):
    """(the adapter's tensors read back from the torch model, logits on the batch)."""
    adapter = load_adapter(stem)
    model = GPT2LMModel(adapter.config, adapter.lora)
    model.load_weights({**init_gpt2_weights(adapter.config, seed), **adapter.tensors}, source=stem)
    model.eval()
    with torch.no_grad():
        logits = model.logits(model(torch.from_numpy(batch.input))[0]).numpy()
    return model.numpy_weights(list(adapter.tensors)), logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stems", nargs="+")
    parser.add_argument("--valid", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=110)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seq_len", type=int, default=64)
    args = parser.parse_args()
    batch = logits_batch(args.valid, args.rows, args.seq_len)
    arrays = {}
    for i, stem in enumerate(args.stems):
        weights, logits = adapter_in_torch(stem, args.seed, batch)
        arrays[f"logits.{i}"] = logits
        arrays.update({f"weights.{i}.{name}": value for name, value in weights.items()})
    np.savez(args.out, **arrays)


if __name__ == "__main__":
    main()
