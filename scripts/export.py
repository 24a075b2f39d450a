"""Export adapters to the Hugging Face ecosystem, and import peft's: numpy only, runs in either venv.

    python scripts/export.py peft --adapter RUN/model.N --out DIR [--base_model NAME_OR_PATH]
        our adapter -> DIR/adapter_config.json + adapter_model.safetensors, for
        peft.PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(BASE), DIR)
    python scripts/export.py from-peft DIR --out STEM [--model_card CARD]
        a peft LoRA adapter of GPT2LMHeadModel -> our STEM.safetensors + STEM.json (both trees load it
        with --lora_checkpoint STEM); the card is the one of the adapter's shape unless given
    python scripts/export.py hf --init_checkpoint BASE --adapter RUN/model.N --vocab DIR --out DIR
        base + adapter merged -> a transformers folder with GPT-2's tokenizer files, for
        AutoModelForCausalLM.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR)

See lora_nlg.checkpoints.peft_format for what converts exactly and what is refused.
"""
import argparse

from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights
from lora_nlg.checkpoints.hf_export import write_hf_merged
from lora_nlg.checkpoints.peft_format import read_peft, write_peft
from lora_nlg.util.errors import NLGError, run_cli


def export_peft(args):
    adapter = load_adapter(args.adapter)
    write_peft(args.out, adapter, base_model=args.base_model)
    print(f"wrote {args.out}/adapter_config.json and adapter_model.safetensors "
          f"({adapter.card}, LoRA r={adapter.lora.r} on {','.join(adapter.lora.targets)})")


def import_peft(args):
    adapter = read_peft(args.folder, card=args.model_card)
    stem = save_adapter(args.out, adapter.tensors, adapter.config, adapter.lora, adapter.card, adapter.step,
                        adapter.framework)
    print(f"wrote {stem}.safetensors and {stem}.json ({adapter.card}, LoRA r={adapter.lora.r} "
          f"alpha={adapter.lora.alpha:g} on {','.join(adapter.lora.targets)})")


def export_hf(args):
    adapter = load_adapter(args.adapter)
    if adapter.lora.r == 0:
        base = None
        if args.init_checkpoint is not None:
            print(f"note: {args.adapter} holds the full model; --init_checkpoint is not used")
    elif args.init_checkpoint is None:
        raise NLGError(f"--init_checkpoint: required (the base that {args.adapter}'s LoRA applies to)")
    else:
        base = load_gpt2_weights(args.init_checkpoint, adapter.config)
    write_hf_merged(args.out, base, adapter, args.vocab)
    print(f"wrote {args.out}: model.safetensors, config.json and tokenizer files ({adapter.card}, merged)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    peft = commands.add_parser("peft", help="our adapter -> a peft LoRA adapter folder")
    peft.add_argument("--adapter", required=True, help="our adapter (<stem>, <stem>.json or <stem>.safetensors)")
    peft.add_argument("--out", required=True, help="output folder")
    peft.add_argument("--base_model", help="written as base_model_name_or_path (e.g. gpt2-medium)")
    peft.set_defaults(run=export_peft)
    from_peft = commands.add_parser("from-peft", help="a peft LoRA adapter folder -> our adapter")
    from_peft.add_argument("folder", help="peft adapter folder (adapter_config.json + adapter_model.safetensors)")
    from_peft.add_argument("--out", required=True, help="output stem: writes <stem>.safetensors and <stem>.json")
    from_peft.add_argument("--model_card", help="model card (default: the one card of the adapter's shape)")
    from_peft.set_defaults(run=import_peft)
    hf = commands.add_parser("hf", help="base + adapter merged -> a transformers model folder")
    hf.add_argument("--init_checkpoint", help="base GPT-2 (file or HF folder); not needed for a full-weights adapter")
    hf.add_argument("--adapter", required=True, help="our adapter (<stem>, <stem>.json or <stem>.safetensors)")
    hf.add_argument("--vocab", required=True, help="GPT-2 vocabulary folder (encoder.json + vocab.bpe)")
    hf.add_argument("--out", required=True, help="output folder")
    hf.set_defaults(run=export_hf)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    run_cli(main)
