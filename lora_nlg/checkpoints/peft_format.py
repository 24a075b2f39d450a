"""Our adapters <-> peft's LoRA folders for transformers' GPT2LMHeadModel, in numpy.

peft keeps one plain LoRA per module: `adapter_model.safetensors` holds
`base_model.model.transformer.h.{i}.{layer}.lora_A.weight` [r', in] and `.lora_B.weight` [out, r'] (the
same orientation as ours: no transposes), `adapter_config.json` the rank and alpha (scale alpha / r, or
alpha / sqrt(r) with use_rslora) with per-module exceptions in `rank_pattern` / `alpha_pattern`. Ours
follows loralib's MergedLinear on the fused c_attn: k enabled slices of q, k, v, each with its own
rank-r block, which as one plain LoRA is rank r * k with a block-diagonal B (zero rows where a slice has
none). Both directions keep delta W = scale * B @ A of every module.
"""
import math
import os
import re

import numpy as np

from lora_nlg.checkpoints.adapter import Adapter
from lora_nlg.checkpoints.tensor_files import check_shapes, read_json, read_tensors, save_safetensors
from lora_nlg.model.config import CARDS, LAYER_SLOTS, CardError, LoRAConfig, get_card, projection_shapes
from lora_nlg.util.errors import CheckpointError
from lora_nlg.util.files import write_json

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")  # peft < 0.6 wrote the .bin
KEY = "base_model.model.transformer.{module}.{part}.weight"  # module: h.{i}.{layer}, part: lora_A / lora_B
KEY_PATTERN = re.compile(r"base_model\.model\.(?:transformer\.)?h\.(\d+)\.(" +
                         "|".join(re.escape(layer) for layer in LAYER_SLOTS) + r")\.(lora_[AB])\.weight")
# LoraConfig options whose forward is more than scale * B @ A on the base weights, or that train more than A, B
NOT_PLAIN_LORA = {
    "use_dora": "DoRA rescales each column of W + delta by a trained magnitude",
    "lora_bias": "lora_bias trains a bias on lora_B",
    "modules_to_save": "modules_to_save trains full copies of modules",
    "trainable_token_indices": "trainable_token_indices trains embedding rows",
    "layer_replication": "layer_replication changes the layer stack",
    "target_parameters": "target_parameters puts LoRA on parameters, not modules",
    "use_qalora": "QALoRA pools the LoRA input",
    "alora_invocation_tokens": "aLoRA switches the adapter on per token",
    "use_bdlora": "BD-LoRA changes the LoRA layout",
    "arrow_config": "Arrow routes between adapters",
    "kasa_config": "KaSA changes the LoRA layout",
    "velora_config": "VeLoRA changes the LoRA layout",
    "monteclora_config": "MonteCLoRA samples the LoRA weights",
}
BASE_CHANGING_INITS = ("pissa", "olora", "loftq", "corda", "lora_ga")  # these inits also rewrite the base weights


def _block_diagonal(b, enabled, r):
    """loralib's stacked B [n * k, r] of k enabled slices -> plain B [n * len(enabled), r * k]."""
    n = b.shape[0] // sum(enabled)
    dense = np.zeros((n * len(enabled), r * sum(enabled)), dtype=b.dtype)
    j = 0
    for slot, on in enumerate(enabled):
        if on:
            dense[slot * n:(slot + 1) * n, j * r:(j + 1) * r] = b[j * n:(j + 1) * n]
            j += 1
    return dense


def plain_loras(tensors, config, lora):
    """Module (`h.{i}.{layer}`) -> (A [r', in], B [out, r'], scale): each of our LoRA modules as one plain
    LoRA with the same delta W = scale * B @ A (what peft stores, and what merging adds, transposed)."""
    loras = {}
    for i in range(config.n_layer):
        for layer in LAYER_SLOTS:
            enabled = lora.enabled_slots(layer)
            if any(enabled):
                module = f"h.{i}.{layer}"
                b = _block_diagonal(tensors[module + ".lora_B"], enabled, lora.r)
                loras[module] = (tensors[module + ".lora_A"], b, lora.scaling)
    return loras


def write_peft(folder, adapter, base_model=None):
    """Our adapter -> folder/adapter_config.json + adapter_model.safetensors for
    `peft.PeftModel.from_pretrained(GPT2LMHeadModel, folder)`; `base_model` goes to base_model_name_or_path."""
    if adapter.lora.r == 0:
        raise CheckpointError(os.fspath(folder), f"adapter of {adapter.card} holds full weights (r = 0), no LoRA "
                                                 "for peft: export it with `hf` instead")
    lora = adapter.lora
    tensors = {}
    for module, (a, b, _) in plain_loras(adapter.tensors, adapter.config, lora).items():
        tensors[KEY.format(module=module, part="lora_A")] = a
        tensors[KEY.format(module=module, part="lora_B")] = b
    slices = {layer: sum(lora.enabled_slots(layer)) for layer in LAYER_SLOTS if any(lora.enabled_slots(layer))}
    fused = {layer: k for layer, k in slices.items() if k > 1}  # c_attn with k slices: rank r * k, alpha * k
    save_safetensors(os.path.join(folder, WEIGHT_FILES[0]), tensors, metadata={"format": "pt"})
    write_json(os.path.join(folder, CONFIG_FILE), {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "target_modules": list(slices),
        "rank_pattern": {layer: lora.r * k for layer, k in fused.items()},
        "alpha_pattern": {layer: lora.alpha * k for layer, k in fused.items()},
        "fan_in_fan_out": True, "bias": "none", "use_rslora": False, "use_dora": False,
        "modules_to_save": None, "init_lora_weights": True, "inference_mode": True,
    })
    return folder


def _pattern_value(patterns, module, default):
    """peft's rank_pattern / alpha_pattern lookup: the first key matching the end of the module name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _check_plain_lora(meta, path):
    """One line for the first option our adapters cannot represent."""
    if meta.get("peft_type") != "LORA":
        raise CheckpointError(path, f"not a peft LoRA adapter (peft_type {meta.get('peft_type')!r})")
    for option, why in NOT_PLAIN_LORA.items():
        if meta.get(option):
            raise CheckpointError(path, f"{option} = {meta[option]!r}: {why}; our adapters hold plain LoRA only")
    if meta.get("bias", "none") != "none":
        raise CheckpointError(path, f"bias = {meta['bias']!r} trains base biases; our adapters hold LoRA only "
                                    "(bias 'none')")
    init = meta.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        raise CheckpointError(path, f"init_lora_weights = {init!r} also changes the base weights, which are not "
                                    "in the adapter")


def _weights_file(folder):
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise CheckpointError(folder, f"no peft adapter weights (looked for {', '.join(WEIGHT_FILES)})")


def _peft_modules(raw, path):
    """peft key -> (module h.{i}.{layer}, part); any other tensor (embedding LoRA, saved modules) is refused."""
    parsed = {}
    for key in raw:
        match = KEY_PATTERN.fullmatch(key)
        if not match:
            raise CheckpointError(path, f"tensor {key!r}: only LoRA on attn.c_attn, attn.c_proj, mlp.c_fc and "
                                        "mlp.c_proj of transformer.h.* can be represented")
        parsed[key] = (f"h.{match[1]}.{match[2]}", match[3])
    return parsed


def _card(name, parsed, raw, path):
    """The named card, or the one card whose width and depth the tensors show."""
    if name is not None:
        return name, get_card(name)
    n_layer = 1 + max(int(module.split(".")[1]) for module, _ in parsed.values())
    widths = {raw[key].shape[1] // (4 if module.endswith("mlp.c_proj") else 1)
              for key, (module, part) in parsed.items() if part == "lora_A" and raw[key].ndim == 2}
    found = [card for card, config in CARDS.items() if {config.n_embd} == widths and config.n_layer == n_layer]
    if len(found) != 1:
        raise CheckpointError(path, f"no single model card has n_embd {sorted(widths)} and n_layer {n_layer} "
                                    f"(found {', '.join(found) or 'none'}): name the card (--model_card)")
    return found[0], CARDS[found[0]]


def _module_settings(meta, config, layers, path):
    """Module h.{i}.{layer} -> (rank, alpha, scale) as peft computes them from the config."""
    settings = {}
    try:
        rslora = bool(meta.get("use_rslora", False))
        for i in range(config.n_layer):
            for layer in layers:
                name = f"transformer.h.{i}.{layer}"  # the module's name in GPT2LMHeadModel: what patterns match
                rank = int(_pattern_value(meta.get("rank_pattern") or {}, name, meta["r"]))
                alpha = float(_pattern_value(meta.get("alpha_pattern") or {}, name, meta["lora_alpha"]))
                settings[name[len("transformer."):]] = rank, alpha, alpha / (math.sqrt(rank) if rslora else rank)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
        raise CheckpointError(path, f"invalid peft LoRA config ({error!r})") from None
    return settings, rslora


def _our_lora(meta, settings, rslora, layers, path):
    """One (r, alpha) for every module: the largest rank, and the alpha of the first module with that rank (whose
    scale is then kept to the bit)."""
    r = max(rank for rank, _, _ in settings.values())
    alpha = next(alpha for rank, alpha, _ in settings.values() if rank == r)
    try:
        return LoRAConfig(r=r, alpha=alpha * math.sqrt(r) if rslora else alpha,
                          dropout=float(meta.get("lora_dropout", 0.0)),
                          targets=[target for layer in layers for target in LAYER_SLOTS[layer]])
    except (TypeError, ValueError, CardError) as error:
        raise CheckpointError(path, f"invalid peft LoRA config ({error})") from None


def read_peft(folder, card=None):
    """A peft LoRA adapter folder for GPT2LMHeadModel -> our Adapter (step 0, framework "peft"), same delta W.

    A c_attn module becomes our q, k, v: lora_A repeated for each slice, lora_B cut into the three slices.
    One (r, alpha) for all modules is enough for any peft ranks and alphas: r is the largest rank (smaller
    ones are padded with zero rows of A and columns of B, which add nothing), alpha that of the first
    largest-rank module (times sqrt(r) with use_rslora, whose scale is alpha / sqrt(r)), and the B of a module
    whose peft scale differs from ours is multiplied by the ratio: delta W is then equal up to float32
    rounding of that product (bit-equal where the scales agree). `card`: the model card, else the one card
    of the adapter's width and depth. Everything that is more than plain LoRA on those four projections of
    every layer is refused in one line.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise CheckpointError(folder, "not a peft adapter folder (no such directory)")
    config_path = os.path.join(folder, CONFIG_FILE)
    meta = read_json(config_path)
    if not isinstance(meta, dict):
        raise CheckpointError(config_path, "not a peft adapter config (not a JSON object)")
    _check_plain_lora(meta, config_path)
    weights_path = _weights_file(folder)
    raw = read_tensors(weights_path)
    parsed = _peft_modules(raw, weights_path)
    if not parsed:
        raise CheckpointError(weights_path, "holds no LoRA tensors")
    card, config = _card(card, parsed, raw, weights_path)
    layers = [layer for layer in LAYER_SLOTS if any(m.endswith("." + layer) for m, _ in parsed.values())]
    settings, rslora = _module_settings(meta, config, layers, config_path)
    expected = {}
    for module, (rank, _, _) in settings.items():
        n_in, n_out = projection_shapes(config)[module.split(".", 2)[2]]
        expected[KEY.format(module=module, part="lora_A")] = (rank, n_in)
        expected[KEY.format(module=module, part="lora_B")] = (n_out, rank)
    tensors = {KEY.format(module=module, part=part): raw[key] for key, (module, part) in parsed.items()}
    check_shapes(expected, {key: value.shape for key, value in tensors.items()}, weights_path)
    lora = _our_lora(meta, settings, rslora, layers, config_path)
    ours = {}
    for module, (rank, _, scale) in settings.items():
        a = np.asarray(tensors[KEY.format(module=module, part="lora_A")], dtype=np.float32)
        b = np.asarray(tensors[KEY.format(module=module, part="lora_B")], dtype=np.float32)
        if scale != lora.scaling:
            b = (b.astype(np.float64) * (scale / lora.scaling)).astype(np.float32)
        a, b = np.pad(a, ((0, lora.r - rank), (0, 0))), np.pad(b, ((0, 0), (0, lora.r - rank)))
        ours[module + ".lora_A"] = np.ascontiguousarray(np.tile(a, (len(LAYER_SLOTS[module.split(".", 2)[2]]), 1)))
        ours[module + ".lora_B"] = np.ascontiguousarray(b)
    return Adapter(tensors=ours, config=config, lora=lora, card=card, step=0, framework="peft")
