"""Checkpoint key maps, checks, safetensors / adapter I/O (framework-free; torch files are in tests/NLG_pytorch)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open

from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.checkpoints.gpt2_weights import canonical_name, load_gpt2_weights
from lora_nlg.checkpoints.tensor_files import read_tensors, save_safetensors
from lora_nlg.model.config import GPT2Config, LoRAConfig
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.util.errors import CheckpointError

CONFIG = GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50, n_positions=8)
WEIGHTS = init_gpt2_weights(CONFIG, seed=0)


def _same(a, b):
    return list(a) == list(b) and all(np.array_equal(a[n], b[n]) for n in a)


def _hf_layout(weights):
    """Names as a Hugging Face GPT2LMHeadModel state dict has them (with tied head and mask buffers)."""
    tensors = {"transformer." + n: w for n, w in weights.items()}
    tensors["lm_head.weight"] = weights["wte.weight"].copy()
    for i in range(CONFIG.n_layer):
        tensors[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
        tensors[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    return tensors


@pytest.mark.parametrize("raw, canonical", [
    ("transformer.h.3.attn.c_attn.weight", "h.3.attn.c_attn.weight"),
    ("module.transformer.wte.weight", "wte.weight"),
    ("module.h.0.ln_1.weight", "h.0.ln_1.weight"),
    ("h.0.ln_1.g", "h.0.ln_1.weight"),
    ("h.0.ln_1.b", "h.0.ln_1.bias"),
    ("h.0.mlp.c_fc.w", "h.0.mlp.c_fc.weight"),
    ("transformer.h.1.attn.c_attn.lora_B", "h.1.attn.c_attn.lora_B"),
    ("ln_f.bias", "ln_f.bias"),
])
def test_canonical_name(raw, canonical):
    assert canonical_name(raw) == canonical


@pytest.mark.parametrize("layout", ["hf", "openai", "module", "tf_suffixes"])
def test_every_layout_loads_to_the_same_weights(tmp_path, layout):
    if layout == "hf":
        tensors = _hf_layout(WEIGHTS)
    elif layout == "openai":  # microsoft/LoRA's gpt2-*-pytorch_model.bin: no prefix, mask buffers kept
        tensors = {**WEIGHTS, "h.0.attn.bias": np.ones((1, 1, 8, 8), np.float32)}
    elif layout == "module":
        tensors = {"module.transformer." + n: w for n, w in WEIGHTS.items()}
    else:
        tensors = {n.replace("ln_1.weight", "ln_1.g").replace("ln_1.bias", "ln_1.b"): w for n, w in WEIGHTS.items()}
    save_safetensors(tmp_path / "model.safetensors", tensors)
    assert _same(load_gpt2_weights(tmp_path, CONFIG), WEIGHTS)  # directory lookup
    assert _same(load_gpt2_weights(tmp_path / "model.safetensors", CONFIG), WEIGHTS)


def test_half_precision_weights_are_widened_to_float32(tmp_path):
    save_safetensors(tmp_path / "half.safetensors", {n: w.astype(np.float16) for n, w in WEIGHTS.items()})
    loaded = load_gpt2_weights(tmp_path / "half.safetensors", CONFIG)
    assert loaded["wte.weight"].dtype == np.float32
    assert np.array_equal(loaded["wte.weight"], WEIGHTS["wte.weight"].astype(np.float16).astype(np.float32))


def test_sharded_directory(tmp_path):
    names = list(WEIGHTS)
    shards = {"model-1.safetensors": names[:10], "model-2.safetensors": names[10:]}
    weight_map = {}
    for shard, shard_names in shards.items():
        save_safetensors(tmp_path / shard, {n: WEIGHTS[n] for n in shard_names})
        weight_map.update({n: shard for n in shard_names})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert _same(load_gpt2_weights(tmp_path, CONFIG), WEIGHTS)


def _error(tmp_path, tensors):
    save_safetensors(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(CheckpointError) as info:
        load_gpt2_weights(tmp_path / "bad.safetensors", CONFIG)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "bad.safetensors") + ": ")
    return message


def test_missing_key_is_named(tmp_path):
    tensors = dict(WEIGHTS)
    del tensors["h.1.mlp.c_fc.bias"]
    assert "missing keys: h.1.mlp.c_fc.bias" in _error(tmp_path, tensors)


def test_misshaped_key_is_named(tmp_path):
    tensors = {**WEIGHTS, "h.0.attn.c_attn.weight": np.zeros((16, 47), np.float32)}
    assert "shape mismatch: h.0.attn.c_attn.weight (16, 47) != expected (16, 48)" in _error(tmp_path, tensors)


def test_unexpected_key_is_named(tmp_path):
    tensors = {**WEIGHTS, "h.0.attn.c_attn.lora_A": np.zeros((4, 16), np.float32)}
    assert "unexpected keys: h.0.attn.c_attn.lora_A" in _error(tmp_path, tensors)


def test_a_file_of_another_model_lists_keys_compactly(tmp_path):
    other = GPT2Config(n_embd=24, n_layer=2, n_head=2, vocab_size=50, n_positions=8)
    message = _error(tmp_path, init_gpt2_weights(other, 0))
    assert "shape mismatch:" in message and "more)" in message


def test_untied_lm_head_is_an_error_not_dropped(tmp_path):
    tensors = _hf_layout(WEIGHTS)
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    assert "lm_head.weight differs from wte.weight" in _error(tmp_path, tensors)


def test_two_keys_mapping_to_one_name(tmp_path):
    tensors = {**WEIGHTS, "transformer.wte.weight": WEIGHTS["wte.weight"]}
    assert "both map to 'wte.weight'" in _error(tmp_path, tensors)


def test_unreadable_inputs_give_one_line_errors(tmp_path):
    (tmp_path / "garbage.bin").write_bytes(b"hello world")
    (tmp_path / "legacy.bin").write_bytes(b"\x80\x02\x8a\x0alegacy torch")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00\x01")
    (tmp_path / "empty").mkdir()
    cases = {"garbage.bin": "neither a safetensors nor a torch checkpoint",
             "legacy.bin": "scripts/convert_checkpoint.py",
             "broken.safetensors": "unreadable safetensors file",
             "empty": "no checkpoint in directory",
             "absent.safetensors": "file not found"}
    for name, problem in cases.items():
        with pytest.raises(CheckpointError) as info:
            read_tensors(tmp_path / name)
        assert problem in str(info.value) and "\n" not in str(info.value)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"a": np.ones(3, np.float32)})
    with pytest.raises(Exception):
        save_safetensors(path, {"a": "not an array"})
    assert np.array_equal(read_tensors(path)["a"], np.ones(3, np.float32))  # old file intact
    assert os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.parametrize("lora", [LoRAConfig(r=2, alpha=8, targets="q,v,fc"), LoRAConfig(r=0)])
def test_adapter_round_trip(tmp_path, lora):
    tensors = init_lora_weights(CONFIG, lora, seed=1) if lora.r else WEIGHTS
    stem = save_adapter(tmp_path / "run" / "model.7", tensors, CONFIG, lora, "custom", 7, "pytorch")
    meta = json.loads((tmp_path / "run" / "model.7.json").read_text())
    assert meta["lora"]["targets"] == ",".join(lora.targets) and meta["step"] == 7
    for path in (stem, stem + ".json", stem + ".safetensors"):
        adapter = load_adapter(path)
        assert _same(adapter.tensors, tensors)
        assert (adapter.config, adapter.lora, adapter.card, adapter.step, adapter.framework) == (
            CONFIG, lora, "custom", 7, "pytorch")


def test_adapter_with_wrong_tensors_is_refused(tmp_path):
    lora = LoRAConfig(r=2, targets="q,v")
    with pytest.raises(CheckpointError, match=r"a\.safetensors: shape mismatch: h\.0\.attn\.c_attn\.lora_A"):
        save_adapter(tmp_path / "a", init_lora_weights(CONFIG, LoRAConfig(r=2, targets="q"), 0), CONFIG, lora,
                     "custom", 0, "pytorch")
    save_adapter(tmp_path / "a", init_lora_weights(CONFIG, lora, 0), CONFIG, lora, "custom", 0, "pytorch")
    meta = json.loads((tmp_path / "a.json").read_text())
    meta["lora"]["r"] = 3
    (tmp_path / "a.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"a\.safetensors: shape mismatch"):
        load_adapter(tmp_path / "a")
    (tmp_path / "a.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CheckpointError, match="not an adapter file"):
        load_adapter(tmp_path / "a")


def test_saved_bytes_do_not_depend_on_the_process(tmp_path):
    """safetensors orders its metadata map differently in each process; save_safetensors sorts it."""
    code = ("import sys, numpy as np\nfrom lora_nlg.checkpoints.tensor_files import save_safetensors\n"
            "save_safetensors(sys.argv[1], {'b': np.ones(3, np.float32), 'a': np.zeros((2, 2), np.float32)},\n"
            "                 {'format': 'x', 'state': '{\"step\": 1}', 'more': 'y', 'extra': 'z'})\n")
    files = [tmp_path / f"{i}.safetensors" for i in range(6)]
    for path in files:
        subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert len({path.read_bytes() for path in files}) == 1
    tensors = read_tensors(files[0])
    assert np.array_equal(tensors["a"], np.zeros((2, 2))) and np.array_equal(tensors["b"], np.ones(3))
    with safe_open(str(files[0]), "np") as f:
        assert f.metadata() == {"format": "x", "state": '{"step": 1}', "more": "y", "extra": "z"}
