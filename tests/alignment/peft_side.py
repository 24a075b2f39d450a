"""peft side of the Jittor test of peft adapters (run in .venv-torch, as a subprocess: peft needs torch).

    PYTHONPATH=tests .venv-torch/bin/python tests/alignment/peft_side.py --base HF_DIR --peft_out DIR --seed S \
        --decode_dir WORK_DIR -- GPT2_BEAM_FLAGS
        makes a LoRA adapter with peft itself (get_peft_model on transformers' GPT2LMHeadModel of HF_DIR,
        PEFT_CONFIG, every lora_B ~ N(0, B_STD) with seed S) and saves it with save_pretrained to DIR; imports
        it with `scripts/export.py from-peft` to WORK_DIR/model.0 and decodes that with NLG_pytorch/src/gpt2_beam.py
        (tests/alignment/torch_beam_reference.py's decode: GPT2_BEAM_FLAGS + --lora_checkpoint WORK_DIR/model.0
        --work_dir WORK_DIR, what it prints in WORK_DIR/stdout.txt).

The Jittor test imports DIR in its own venv and decodes its import with the same flags.
"""
import argparse
import pathlib

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2LMHeadModel

from alignment.torch_beam_reference import decode
from testpaths import load_script

# the four GPT-2 projections, with a rank and an alpha per module: the import pads ranks and rescales B
PEFT_CONFIG = dict(r=4, lora_alpha=16, target_modules=["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
                   rank_pattern={"attn.c_attn": 8}, alpha_pattern={"mlp.c_fc": 8}, task_type="CAUSAL_LM")
B_STD = 0.1  # large enough for the adapter to change what the peaked base decodes


def make_peft_adapter(base, folder, seed):
    torch.manual_seed(seed)
    model = get_peft_model(GPT2LMHeadModel.from_pretrained(base), LoraConfig(**PEFT_CONFIG))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, B_STD)
    model.save_pretrained(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--peft_out", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--decode_dir", required=True)
    parser.add_argument("beam_flags", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    beam_flags = args.beam_flags[1:] if args.beam_flags[:1] == ["--"] else args.beam_flags
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster on two shared cores
    make_peft_adapter(args.base, args.peft_out, args.seed)
    stem = pathlib.Path(args.decode_dir) / "model.0"
    load_script("scripts/export.py").main(["from-peft", args.peft_out, "--out", str(stem)])
    decode(stem, args.decode_dir, beam_flags)


if __name__ == "__main__":
    main()
