"""The flags of gpt2_beam.py and everything a beam run does besides the search, once for both trees.

Flag names and defaults are microsoft/LoRA's gpt2_beam.py (its README's E2E command passes
`--batch_size 1 --seq_len 512 --eval_len 64 --beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4
--repetition_penalty 1.0 --eos_token_id 628`); `--eos_token_id` appends to the default [50256] as
there, so `--eos_token_id 628` means [50256, 628]. What is different:
- base weights (`--init_checkpoint`, or `--random_seed` for a random model in tests and demos) and
  the trained weights (`--lora_checkpoint`) are separate flags. The latter is our adapter (a
  `<stem>.json` beside `<stem>.safetensors`: model card and LoRA config come from its json, and
  `--model_card` / `--lora_dim` / `--lora_alpha`, when given, must agree), or any tensor file that
  lora_nlg.checkpoints reads: LoRA tensors only (the reference's intermediate saves), or a full
  state (its final save, or a full fine-tune), which then replaces the base;
- each UNIQUE input is decoded once (the reference decodes every test row, ~7 per E2E input), and
  `id` in the prediction jsonl is the index of the unique input in order of first appearance.
"""
import argparse
import os
import time
from dataclasses import dataclass

from tqdm import tqdm

from lora_nlg.batching import load_encoded, query_batches, unique_contexts
from lora_nlg.beam import DEFAULT_EOS_ID, BeamError, BeamSettings
from lora_nlg.cards import CARDS, GPT2Config, LoRAConfig, get_card, lora_shapes, param_shapes
from lora_nlg.checkpoints import (CheckpointError, adapter_stem, canonical_name, canonical_tensors,
                                  load_adapter, load_gpt2_weights, read_tensors)
from lora_nlg.errors import NLGError
from lora_nlg.init_weights import init_gpt2_weights
from lora_nlg.jsonl import write_jsonl
from lora_nlg.train_cli import DEVICE_PATTERN


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
    model.add_argument("--model_card", default=None, choices=list(CARDS),
                       help="default: the card in the adapter json (required without one)")
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
    search.add_argument("--eos_token_id", action="append", type=int, default=[DEFAULT_EOS_ID],
                        help=f"appended to [{DEFAULT_EOS_ID}]; repeat for several")

    run = parser.add_argument_group("run")
    run.add_argument("--work_dir", default="gpt2_model", help="the prediction file goes here")
    run.add_argument("--output_file", default="beam_prediction.jsonl")
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    run.add_argument("--platform", default="local", help="accepted for compatibility, ignored")
    return parser


def parse_args(argv=None, framework="pytorch"):
    """Parsed and checked flags (`args.settings` holds the BeamSettings); a bad value exits with code 2."""
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
        args.settings = BeamSettings(
            beam=args.beam, eval_len=args.eval_len, min_length=args.min_length, length_penalty=args.length_penalty,
            no_repeat_ngram_size=args.no_repeat_ngram_size, repetition_penalty=args.repetition_penalty,
            eos_ids=tuple(args.eos_token_id))
    except BeamError as error:
        parser.error(str(error))
    return args


# ---------------------------------------------------------------- weights

@dataclass
class DecodingModel:
    """What to build: the model shape, its LoRA config, and all its weights (canonical numpy, unmerged)."""
    config: GPT2Config
    lora: LoRAConfig
    weights: dict
    description: str


def is_adapter(path):
    return os.path.isfile(adapter_stem(path) + ".json")


def _model_config(args, adapter):
    if adapter is None:
        if args.model_card is None:
            raise NLGError("--model_card: required (no adapter json to take the model from)")
        return get_card(args.model_card)
    if args.model_card is not None and get_card(args.model_card) != adapter.config:
        raise CheckpointError(adapter_stem(args.lora_checkpoint) + ".json",
                              f"adapter is for model {adapter.card!r} {adapter.config.to_dict()}, "
                              f"not --model_card {args.model_card}")
    return adapter.config


def _lora_config(args, adapter):
    if adapter is not None:
        json_path = adapter_stem(args.lora_checkpoint) + ".json"
        for flag, given, stored in (("--lora_dim", args.lora_dim, adapter.lora.r),
                                    ("--lora_alpha", args.lora_alpha, adapter.lora.alpha)):
            if given is not None and given != stored:
                raise CheckpointError(json_path, f"adapter has {flag[2:]} {stored:g}, but {flag} {given:g} was given")
        return adapter.lora
    if args.lora_checkpoint is None:
        if args.lora_dim:
            raise NLGError(f"--lora_dim {args.lora_dim}: no --lora_checkpoint to load the LoRA weights from")
        return LoRAConfig(r=0)
    if args.lora_dim == 0:
        return LoRAConfig(r=0)
    if args.lora_dim is None or args.lora_alpha is None:
        raise CheckpointError(args.lora_checkpoint, "a tensor file without adapter json needs --lora_dim and "
                                                    "--lora_alpha (LoRA on q,v as the reference; --lora_dim 0: none)")
    return LoRAConfig(r=args.lora_dim, alpha=args.lora_alpha)


def _trained_tensors(args, adapter, config, lora):
    """(tensors of --lora_checkpoint, whether they include the base weights)."""
    if adapter is not None:
        return adapter.tensors, lora.r == 0
    raw = read_tensors(args.lora_checkpoint)
    full = any(canonical_name(name) in param_shapes(config) for name in raw)
    expected = {**param_shapes(config), **lora_shapes(config, lora)} if full else lora_shapes(config, lora)
    return canonical_tensors(raw, expected, args.lora_checkpoint), full


def _base_weights(args, config):
    if args.init_checkpoint is not None:
        return load_gpt2_weights(args.init_checkpoint, config), f"base {args.init_checkpoint}"
    if args.random_seed is not None:
        return init_gpt2_weights(config, args.random_seed), f"random base (seed {args.random_seed})"
    raise NLGError("no base weights: give --init_checkpoint (or --random_seed for a random model)")


def load_decoding_model(args):
    """The model the flags describe; any missing, extra or mis-shaped tensor is an error naming its file."""
    adapter = load_adapter(args.lora_checkpoint) if args.lora_checkpoint and is_adapter(args.lora_checkpoint) else None
    config = _model_config(args, adapter)
    if args.seq_len > config.n_positions:
        raise BeamError(f"--seq_len {args.seq_len}: exceeds the model's {config.n_positions} positions")
    args.settings.check_vocabulary(config.vocab_size)
    lora = _lora_config(args, adapter)
    if args.lora_checkpoint is None:
        weights, description = _base_weights(args, config)
        return DecodingModel(config, lora, weights, description + ", no LoRA")
    tensors, full = _trained_tensors(args, adapter, config, lora)
    source = args.lora_checkpoint + (f" (step {adapter.step}, {adapter.framework})" if adapter else "")
    kind = f"LoRA r={lora.r} alpha={lora.alpha:g} on {','.join(lora.targets)}" if lora.r else "no LoRA"
    if full:
        if args.init_checkpoint is not None or args.random_seed is not None:
            print(f"note: {args.lora_checkpoint} holds the full model; the base flags are not used")
        return DecodingModel(config, lora, tensors, f"full weights {source}, {kind}")
    base, description = _base_weights(args, config)
    return DecodingModel(config, lora, {**base, **tensors}, f"{description} + {kind} from {source}")


# ---------------------------------------------------------------- the run

def run(args, decode_batch):
    """Decode each unique input of --data once with decode_batch(QueryBatch) -> [ids per input]; write jsonl.

    The prediction file gets `{"id": i, "predict": ids}` for unique input i (order of first appearance);
    `predict` ends with the EOS id that finished the hypothesis, if one did.
    """
    examples = load_encoded(args.data)
    if not examples:
        raise NLGError(f"{args.data}: no examples")
    contexts, _ = unique_contexts(examples)
    print(f"{len(contexts)} unique inputs ({len(examples)} rows) in {args.data}")
    predictions = []
    start = time.perf_counter()
    with tqdm(total=len(contexts), unit="input", dynamic_ncols=True, leave=False) as progress:
        for batch in query_batches(contexts, args.batch_size, args.seq_len, args.eval_len):
            predictions += decode_batch(batch)
            progress.update(len(batch.ids))
    seconds = time.perf_counter() - start
    path = os.path.join(args.work_dir, args.output_file)
    write_jsonl(path, ({"id": i, "predict": ids} for i, ids in enumerate(predictions)))
    print(f"decoded {len(contexts)} inputs in {seconds:.1f}s: {len(contexts) / seconds:.2f} examples/s "
          f"(batch {args.batch_size}, beam {args.beam})")
    print(f"saved predictions to {path}")
    return predictions
