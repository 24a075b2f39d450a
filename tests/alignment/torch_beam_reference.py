"""PyTorch side of the Jittor beam-search alignment tests (run in .venv-torch, as a subprocess).

    PYTHONPATH=tests .venv-torch/bin/python tests/alignment/torch_beam_reference.py --write_adapter STEM --lora_seed S \
        [--decode ADAPTER WORK_DIR]... -- GPT2_BEAM_FLAGS
        writes the adapter torch saves from a GPT2LMModel holding tests/alignment/fixtures.py's LoRA
        weights (seed S, B ~ N(0, beam_cases.ADAPTER_B_STD)) for the model of `--model_card`, then runs
        NLG_pytorch/src/gpt2_beam.py once per --decode with GPT2_BEAM_FLAGS + `--lora_checkpoint ADAPTER
        --work_dir WORK_DIR`; what it prints goes to WORK_DIR/stdout.txt.

The Jittor test writes the base weights, the test set and its own adapter, and runs its gpt2_beam.py
with the same flags, so both frameworks decode from the same files.
"""
import argparse
import contextlib
import pathlib

import torch

import gpt2_beam
from alignment.beam_cases import ADAPTER_B_STD
from alignment.fixtures import lora_weights
from lora import set_trainable, trainable_state_dict
from lora_nlg.checkpoints.adapter import save_adapter
from lora_nlg.model.config import LoRAConfig, get_card
from model import GPT2LMModel

LORA = LoRAConfig(r=4, alpha=32, targets="q,v")


def write_adapter(stem, card, seed):
    """The adapter torch saves from a GPT2LMModel holding the shared numpy LoRA init (B ~ N(0, ADAPTER_B_STD))."""
    config = get_card(card)
    model = GPT2LMModel(config, LORA)
    lora = lora_weights(config, LORA, seed, b_std=ADAPTER_B_STD)
    model.load_weights({**model.numpy_weights(), **lora})  # the base stays zeros: an adapter holds LoRA only
    set_trainable(model, LORA)
    return save_adapter(stem, model.numpy_weights(list(trainable_state_dict(model))), config, LORA, card, 1,
                        "pytorch")


def decode(adapter, work_dir, beam_flags):
    work_dir = pathlib.Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / "stdout.txt", "w") as out, contextlib.redirect_stdout(out):
        gpt2_beam.main([*beam_flags, "--lora_checkpoint", str(adapter), "--work_dir", str(work_dir)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write_adapter", required=True)
    parser.add_argument("--lora_seed", type=int, required=True)
    parser.add_argument("--decode", nargs=2, action="append", default=[], metavar=("ADAPTER", "WORK_DIR"))
    parser.add_argument("beam_flags", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    beam_flags = args.beam_flags[1:] if args.beam_flags[:1] == ["--"] else args.beam_flags
    card = beam_flags[beam_flags.index("--model_card") + 1]
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster on two shared cores
    write_adapter(args.write_adapter, card, args.lora_seed)
    for adapter, work_dir in args.decode:
        decode(adapter, work_dir, beam_flags)


if __name__ == "__main__":
    main()
