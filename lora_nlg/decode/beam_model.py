"""The weights gpt2_beam.py decodes with: a base, plus an adapter or a tensor file, each checked against its source.

The base comes from `--init_checkpoint` (or `--random_seed` for a random model in tests and demos);
`--lora_checkpoint` is our adapter (a `<stem>.json` beside `<stem>.safetensors`: model card and LoRA
config come from its json, and `--model_card` / `--lora_dim` / `--lora_alpha`, when given, must agree),
or any tensor file that lora_nlg.checkpoints reads: LoRA tensors only (the reference's intermediate
saves), or a full state (its final save, or a full fine-tune), which then replaces the base.
"""
import os
from dataclasses import dataclass

from lora_nlg.checkpoints.adapter import adapter_stem, load_adapter
from lora_nlg.checkpoints.gpt2_weights import canonical_name, canonical_tensors, load_gpt2_weights
from lora_nlg.checkpoints.tensor_files import read_tensors
from lora_nlg.decode.beam import BeamError
from lora_nlg.model.config import GPT2Config, LoRAConfig, get_card, lora_shapes, param_shapes
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.util.errors import CheckpointError, NLGError


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


def load_decoding_model(args, settings):
    """The model the flags describe (`settings`, their BeamSettings, must fit its vocabulary); any missing,
    extra or mis-shaped tensor is an error naming its file."""
    if args.lora_checkpoint and not (is_adapter(args.lora_checkpoint) or os.path.exists(args.lora_checkpoint)):
        raise CheckpointError(args.lora_checkpoint, "--lora_checkpoint not found (neither an adapter "
                                                    "<stem>.json + .safetensors nor a tensor file)")
    adapter = load_adapter(args.lora_checkpoint) if args.lora_checkpoint and is_adapter(args.lora_checkpoint) else None
    config = _model_config(args, adapter)
    if args.seq_len > config.n_positions:
        raise BeamError(f"--seq_len {args.seq_len}: exceeds the model's {config.n_positions} positions")
    settings.check_vocabulary(config.vocab_size)
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
