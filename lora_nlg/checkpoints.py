"""Checkpoint I/O in numpy, shared by both framework trees: read any GPT-2 weight file, write adapters.

Reading goes in two steps: `read_tensors` gives the raw name -> array dict of a file or directory
(safetensors, sharded safetensors, or a torch zip checkpoint read WITHOUT torch), then
`canonical_tensors` maps the names to the canonical OpenAI layout (`wte.weight`, `h.0.attn.c_attn.weight`,
...) and checks them against the expected shapes. A missing, unexpected or mis-shaped key is an
error naming the keys: a silently partial load (microsoft/LoRA issue 138: BLEU 0 because the
backbone was never loaded) is never possible.

Adapter format (framework-neutral, so either tree reads the other's): `<stem>.safetensors` holds
the trained tensors (the LoRA ones, or every weight when r == 0) under canonical names, and
`<stem>.json` the model config, card, LoRA config, step and framework. Writes are atomic.
"""
import collections
import json
import os
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from lora_nlg.cards import CardError, GPT2Config, LoRAConfig, param_shapes, trainable_shapes
from lora_nlg.errors import NLGError
from lora_nlg.files import atomic_open, write_json

ADAPTER_FORMAT = "lora_nlg-adapter-1"
CONVERT_SCRIPT = "scripts/convert_checkpoint.py"
# files tried, in order, when a checkpoint path is a directory (Hugging Face layout)
DIRECTORY_FILES = ("model.safetensors", "model.safetensors.index.json",
                   "pytorch_model.bin", "pytorch_model.bin.index.json")
NAME_PREFIXES = ("module.transformer.", "transformer.", "module.")
# TF-converted GPT-2 files name LayerNorm / Conv1D tensors .g / .b / .w (as microsoft/LoRA's load_weight maps)
SUFFIX_RENAMES = {".g": ".weight", ".b": ".bias", ".w": ".weight"}
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights
TIED_HEADS = ("lm_head.weight", "lm_head.decoder.weight")  # copies of wte.weight
MAX_LISTED_KEYS = 6


class CheckpointError(NLGError):
    """A checkpoint that cannot be read or does not fit the model; the message names file and problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------- reading raw tensors

def read_tensors(path):
    """Raw name -> numpy array dict of a checkpoint file or Hugging Face model directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_tensors(_checkpoint_in_directory(path))
    if not os.path.isfile(path):
        raise CheckpointError(path, "file not found")
    if path.endswith(".index.json"):
        return _read_sharded(path)
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    return _read_torch_zip(path)


def _checkpoint_in_directory(path):
    for name in DIRECTORY_FILES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise CheckpointError(path, f"no checkpoint in directory (looked for {', '.join(DIRECTORY_FILES)})")


def _read_safetensors(path):
    try:
        return load_file(path)
    except Exception as error:  # the library raises several types for bad files
        raise CheckpointError(path, f"unreadable safetensors file ({error})") from None


def _read_sharded(path):
    """A `*.index.json` of a sharded checkpoint: its `weight_map` names the shard holding each tensor."""
    index = read_json(path)
    if not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(path, "shard index has no 'weight_map' object")
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(read_tensors(os.path.join(os.path.dirname(path), shard)))
    return tensors


# torch storage class name -> numpy dtype (bfloat16 is read as uint16 and widened to float32)
TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for a `torch.FloatStorage`-like class named in the pickle."""

    def __init__(self, name):
        self.name = name
        self.dtype = TORCH_STORAGE_DTYPES[name]


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    """numpy version of torch._utils._rebuild_tensor_v2: a strided view of a flat storage, copied."""
    if len(size) == 0:
        return np.array(storage[storage_offset])
    strides = tuple(step * storage.itemsize for step in stride)
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=tuple(size), strides=strides)
    return np.array(view)


def _rebuild_parameter(data, *_unused):
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch zip checkpoint's data.pkl into numpy arrays; refuses any other global."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }

    def __init__(self, file, archive, prefix, path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[module, name]
        if module == "torch" and name in TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(self.path, f"unsupported object {module}.{name} in torch checkpoint")

    def persistent_load(self, pid):
        _kind, storage_type, key, _location, _numel = pid
        if key not in self.storages:
            data = np.frombuffer(self.archive.read(f"{self.prefix}data/{key}"), dtype=storage_type.dtype)
            if storage_type.name == "BFloat16Storage":
                data = (data.astype(np.uint32) << 16).view(np.float32)
            self.storages[key] = data
        return self.storages[key]


def _read_torch_zip(path):
    """A `torch.save` file (zip format, torch >= 1.6) read without torch, so the Jittor tree can use it."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise CheckpointError(path, f"legacy (pre-1.6) torch checkpoint; convert it to safetensors with "
                                        f"`.venv-torch/bin/python {CONVERT_SCRIPT} {path} OUT.safetensors`")
        raise CheckpointError(path, "neither a safetensors nor a torch checkpoint")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(path, "zip file is not a torch checkpoint (no single */data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in archive.namelist() and archive.read(prefix + "byteorder") != b"little":
            raise CheckpointError(path, "big-endian torch checkpoint is not supported")
        with archive.open(pickles[0]) as f:
            obj = _TorchUnpickler(f, archive, prefix, path).load()
    return _tensor_dict(obj, path)


def _tensor_dict(obj, path):
    """The name -> array dict inside an unpickled checkpoint (unwrapping {'model_state_dict': ...})."""
    for wrapper in ("model_state_dict", "state_dict"):
        if isinstance(obj, dict) and wrapper in obj:
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"checkpoint holds a {type(obj).__name__}, not a dict of tensors")
    for name, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(path, f"entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(obj)


# ---------------------------------------------------------------- canonical names and checks

def canonical_name(name):
    """Checkpoint key -> canonical key: strips module./transformer. prefixes, renames .g/.b/.w suffixes."""
    for prefix in NAME_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    for old, new in SUFFIX_RENAMES.items():
        if name.endswith(old):
            name = name[: -len(old)] + new
    return name


def canonical_tensors(tensors, expected_shapes, path):
    """Map raw checkpoint tensors to canonical names, drop buffers and the tied head, check, cast to float32."""
    renamed, origin = {}, {}
    for name, value in tensors.items():
        new = canonical_name(name)
        if new in renamed:
            raise CheckpointError(path, f"keys {origin[new]!r} and {name!r} both map to {new!r}")
        renamed[new], origin[new] = value, name
    for name in [n for n in renamed if n.endswith(BUFFER_SUFFIXES)]:
        del renamed[name]
    for head in TIED_HEADS:
        if head in renamed:
            _check_tied_head(renamed.pop(head), renamed.get("wte.weight"), head, path)
    check_shapes(expected_shapes, {name: value.shape for name, value in renamed.items()}, path)
    return {name: np.ascontiguousarray(renamed[name], dtype=np.float32) for name in expected_shapes}


def _check_tied_head(head, wte, name, path):
    """The LM head is tied to wte: a head that differs would be silently lost, so it is an error."""
    if wte is not None and (head.shape != wte.shape or not np.array_equal(head, wte)):
        raise CheckpointError(path, f"{name} differs from wte.weight (an untied LM head is not supported)")


def _listed(names):
    names = sorted(names)
    shown = ", ".join(names[:MAX_LISTED_KEYS])
    return shown + (f" (+{len(names) - MAX_LISTED_KEYS} more)" if len(names) > MAX_LISTED_KEYS else "")


def check_shapes(expected_shapes, actual_shapes, source):
    """Raise one CheckpointError naming every missing, unexpected and mis-shaped key (none ignored)."""
    missing = [n for n in expected_shapes if n not in actual_shapes]
    unexpected = [n for n in actual_shapes if n not in expected_shapes]
    misshaped = [f"{n} {tuple(actual_shapes[n])} != expected {tuple(expected_shapes[n])}"
                 for n in expected_shapes if n in actual_shapes
                 and tuple(actual_shapes[n]) != tuple(expected_shapes[n])]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if misshaped:
        problems.append(f"shape mismatch: {_listed(misshaped)}")
    if problems:
        raise CheckpointError(source, "; ".join(problems))


def load_gpt2_weights(path, config):
    """Canonical float32 GPT-2 weights from any supported file or directory (HF, OpenAI, microsoft/LoRA, ours)."""
    return canonical_tensors(read_tensors(path), param_shapes(config), os.fspath(path))


def load_canonical(path, expected_shapes):
    """Canonical float32 tensors of exactly `expected_shapes` (e.g. cards.lora_shapes for an official adapter)."""
    return canonical_tensors(read_tensors(path), expected_shapes, os.fspath(path))


# ---------------------------------------------------------------- atomic writes

def save_safetensors(path, tensors, metadata=None):
    """Write name -> numpy array as safetensors, atomically (a crash never leaves a partial file)."""
    data = safetensors_bytes({name: np.ascontiguousarray(value) for name, value in tensors.items()}, metadata)
    with atomic_open(os.fspath(path), binary=True) as f:
        f.write(data)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"invalid JSON ({error})") from None


# ---------------------------------------------------------------- adapters

@dataclass
class Adapter:
    """A trained adapter: canonical tensors plus what is needed to rebuild the model around them."""
    tensors: dict
    config: GPT2Config
    lora: LoRAConfig
    card: str
    step: int
    framework: str


def adapter_stem(path):
    """`run/model.10` from `run/model.10`, `run/model.10.json` or `run/model.10.safetensors`."""
    path = os.fspath(path)
    for suffix in (".json", ".safetensors"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def save_adapter(stem, tensors, config, lora, card, step, framework):
    """Write `<stem>.safetensors` (tensors) then `<stem>.json` (metadata); returns the stem."""
    stem = adapter_stem(stem)
    check_shapes(trainable_shapes(config, lora), {n: v.shape for n, v in tensors.items()}, stem + ".safetensors")
    save_safetensors(stem + ".safetensors", tensors)
    write_json(stem + ".json", {
        "format": ADAPTER_FORMAT, "card": card, "model": config.to_dict(), "lora": lora.to_dict(),
        "step": int(step), "framework": framework,
    })
    return stem


def load_adapter(path):
    """Read an adapter written by either tree; its tensors are checked against its own config."""
    stem = adapter_stem(path)
    meta = read_json(stem + ".json")
    if meta.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(stem + ".json", f"not an adapter file (format {meta.get('format')!r}, "
                                              f"expected {ADAPTER_FORMAT!r})")
    try:
        config = GPT2Config.from_dict(meta["model"])
        lora = LoRAConfig.from_dict(meta["lora"])
        card, step, framework = meta["card"], int(meta["step"]), meta["framework"]
    except (KeyError, TypeError, ValueError, CardError) as error:
        raise CheckpointError(stem + ".json", f"invalid adapter metadata ({error!r})") from None
    tensors = canonical_tensors(read_tensors(stem + ".safetensors"), trainable_shapes(config, lora),
                                stem + ".safetensors")
    return Adapter(tensors=tensors, config=config, lora=lora, card=card, step=step, framework=framework)
