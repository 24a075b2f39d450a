"""A `torch.save` checkpoint (zip format, torch >= 1.6) read WITHOUT torch, so the Jittor tree can use it.

Only the pickle globals a state dict needs are allowed (OrderedDict, tensor and parameter rebuilds,
storage classes); anything else is refused, so loading a checkpoint cannot run code.
"""
import collections
import pickle
import zipfile
import zlib

import numpy as np

from lora_nlg.util.errors import CheckpointError

CONVERT_SCRIPT = "scripts/convert_checkpoint.py"

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


class _BadTensor(Exception):
    """A tensor record that does not fit its storage; read_torch_zip names the file."""


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    """numpy version of torch._utils._rebuild_tensor_v2: a strided view of a flat storage, copied.

    The view is checked to lie inside the storage first: as_strided over too little memory reads
    past the buffer (a segfault, or garbage) instead of failing."""
    size, stride = tuple(size), tuple(stride)
    if storage_offset < 0 or any(n < 0 for n in size) or any(step < 0 for step in stride):
        raise _BadTensor(f"a tensor record has a negative offset, size or stride ({storage_offset}, {size}, {stride})")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    needed = storage_offset + sum((n - 1) * step for n, step in zip(size, stride)) + 1
    if needed > storage.size:
        raise _BadTensor(f"a tensor of shape {list(size)} needs {needed} elements of its storage, which holds "
                         f"{storage.size} (a truncated or edited file)")
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
            raw = self.archive.read(f"{self.prefix}data/{key}")
            itemsize = np.dtype(storage_type.dtype).itemsize
            if len(raw) % itemsize:
                raise _BadTensor(f"storage data/{key} has {len(raw)} bytes, not a whole number of "
                                 f"{storage_type.name} elements (a truncated or edited file)")
            data = np.frombuffer(raw, dtype=storage_type.dtype)
            if storage_type.name == "BFloat16Storage":
                data = (data.astype(np.uint32) << 16).view(np.float32)
            self.storages[key] = data
        return self.storages[key]


def read_torch_zip(path):
    """A `torch.save` file (zip format, torch >= 1.6) read without torch, so the Jittor tree can use it."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise CheckpointError(path, f"legacy (pre-1.6) torch checkpoint; convert it to safetensors with "
                                        f"`.venv-torch/bin/python {CONVERT_SCRIPT} {path} OUT.safetensors`")
        if head == b"PK":
            raise CheckpointError(path, "damaged zip archive (a truncated or edited torch checkpoint?)")
        raise CheckpointError(path, "neither a safetensors nor a torch checkpoint")
    try:
        return _read_archive(path)
    except _BadTensor as error:
        raise CheckpointError(path, str(error)) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, pickle.UnpicklingError, ValueError) as error:
        raise CheckpointError(path, f"damaged torch checkpoint ({type(error).__name__}: {error})") from None


def _read_archive(path):
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
