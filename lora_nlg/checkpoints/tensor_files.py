"""Tensor files in numpy, shared by both framework trees: read any checkpoint file, write safetensors.

`read_tensors` gives the raw name -> array dict of a file or directory (safetensors, sharded
safetensors, or a torch zip checkpoint read WITHOUT torch, see lora_nlg.checkpoints.torch_zip);
lora_nlg.checkpoints.gpt2_weights maps the names to the canonical layout. `check_shapes` is the one
check every loader uses: a missing, unexpected or mis-shaped key is an error naming the keys, so a
silently partial load (microsoft/LoRA issue 138: BLEU 0 because the backbone was never loaded) is
never possible. Writes are atomic.
"""
import json
import os
import struct

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from lora_nlg.checkpoints.torch_zip import read_torch_zip
from lora_nlg.util.errors import CheckpointError
from lora_nlg.util.files import atomic_open

# files tried, in order, when a checkpoint path is a directory (Hugging Face layout)
DIRECTORY_FILES = ("model.safetensors", "model.safetensors.index.json",
                   "pytorch_model.bin", "pytorch_model.bin.index.json")
MAX_LISTED_KEYS = 6


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
    return read_torch_zip(path)


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


def save_safetensors(path, tensors, metadata=None):
    """Write name -> numpy array as safetensors, atomically (a crash never leaves a partial file); the same
    tensors and metadata give the same bytes in every process (see `canonical_header`)."""
    data = safetensors_bytes({name: np.ascontiguousarray(value) for name, value in tensors.items()}, metadata)
    with atomic_open(os.fspath(path), binary=True) as f:
        f.write(canonical_header(data))


def canonical_header(data):
    """safetensors bytes with the JSON header's keys sorted.

    The library writes the metadata map in an order that changes from process to process (a hash map),
    so the same run gave checkpoint files that differed in their first bytes. The sorted header is no
    longer than the original (the same entries, compact JSON); it is padded with spaces, as the format
    allows, to the original length, so the tensor data and its offsets are untouched."""
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > length:
        raise ValueError("safetensors header grew when its keys were sorted")
    return data[:8] + text + b" " * (length - len(text)) + data[8 + length:]


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"invalid JSON ({error})") from None


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
