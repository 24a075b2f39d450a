"""The flags of gpt2_beam.py, once for both trees (the weights: beam_model; the loop: beam_loop).

Flag names and defaults are microsoft/LoRA's gpt2_beam.py (its README's E2E command passes
`--batch_size 1 --seq_len 512 --eval_len 64 --beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4
--repetition_penalty 1.0 --eos_token_id 628`); `--eos_token_id` appends to the default [50256] as
there, so `--eos_token_id 628` means [50256, 628]. What is different: base weights (`--init_checkpoint`,
or `--random_seed` for a random model) and the trained weights (`--lora_checkpoint`, see
lora_nlg.decode.beam_model) are separate flags, and each unique input is decoded once
(lora_nlg.decode.beam_loop).

    args = parse_args(argv, framework)      # the checked flags
    settings = beam_settings(args)          # their search part, a BeamSettings (passed on explicitly)
"""
import argparse

from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.decode.beam import BeamError, BeamSettings
from lora_nlg.model.config import CARD_HELP, card_argument
from lora_nlg.util.flags import DEVICE_PATTERN, EXACT_HELP
from lora_nlg.util.ranks import add_local_rank


def build_parser(framework):
    parser = argparse.ArgumentParser(
        prog="gpt2_beam.py", description=f"Beam search with a LoRA GPT-2 over an encoded test set ({framework}).")
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="encoded test jsonl (data/prepare.py output)")
    data.add_argument("--batch_size", type=int, default=10, help="unique inputs decoded together")
    data.add_argument("--seq_len", type=int, default=512, help="prompt (left-truncated) + generation fit in this")
    data.add_argument("--eval_len", type=int, default=256, help="tokens to generate at most")
    data.add_argument("--min_length", type=int, default=0, help="EOS is banned before this many tokens")

    model = parser.add_argument_group("model")
    model.add_argument("--model_card", default=None, type=card_argument,
                       help=f"{CARD_HELP}; default: the card in the adapter json (required without one)")
    base = model.add_mutually_exclusive_group()
    base.add_argument("--init_checkpoint", default=None,
                      help="base GPT-2 weights (any format lora_nlg.checkpoints reads)")
    base.add_argument("--random_seed", type=int, default=None,
                      help="random GPT-2 init as the base instead (tests and demos)")
    model.add_argument("--lora_checkpoint", default=None,
                       help="adapter stem / .json / .safetensors, or a LoRA-only or full-weights tensor file")
    model.add_argument("--lora_dim", type=int, default=None, help="LoRA rank (default: from the adapter json)")
    model.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (default: from the adapter json)")

    search = parser.add_argument_group("search")
    search.add_argument("--beam", type=int, default=1, help="beam size (1: greedy)")
    search.add_argument("--length_penalty", type=float, default=1.0, help="result score = score / length ** this")
    search.add_argument("--no_repeat_ngram_size", type=int, default=4, help="0: no ban")
    search.add_argument("--repetition_penalty", type=float, default=1.0, help="CTRL penalty; 1.0: none")
    search.add_argument("--eos_token_id", action="append", type=int, default=[EOS_ID],
                        help=f"appended to [{EOS_ID}]; repeat for several")

    run = parser.add_argument_group("run")
    run.add_argument("--work_dir", default="gpt2_model", help="the prediction file goes here")
    run.add_argument("--output_file", default="beam_prediction.jsonl")
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    run.add_argument("--exact", action="store_true", help=EXACT_HELP)
    run.add_argument("--platform", default="local", help="accepted for compatibility, ignored")
    add_local_rank(run)
    return parser


def beam_settings(args):
    """The BeamSettings of parsed flags (a BeamError for values the search rules refuse)."""
    return BeamSettings(
        beam=args.beam, eval_len=args.eval_len, min_length=args.min_length, length_penalty=args.length_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size, repetition_penalty=args.repetition_penalty,
        eos_ids=tuple(args.eos_token_id))


def parse_args(argv=None, framework="pytorch"):
    """Parsed and checked flags (their BeamSettings included: `beam_settings(args)`); a bad value exits
    with code 2."""
    parser = build_parser(framework)
    args = parser.parse_args(argv)
    problems = [
        (args.batch_size < 1, "--batch_size must be >= 1"),
        (args.eval_len >= args.seq_len, f"--eval_len {args.eval_len} must be smaller than --seq_len {args.seq_len}"),
        (args.lora_dim is not None and args.lora_dim < 0, "--lora_dim must be >= 0"),
        (not DEVICE_PATTERN.fullmatch(args.device), f"--device {args.device!r}: use auto, cpu, cuda or cuda:N"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    try:
        beam_settings(args)
    except BeamError as error:
        parser.error(str(error))
    return args
