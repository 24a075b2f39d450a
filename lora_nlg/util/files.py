"""Small file helpers shared by every stage: atomic writes, checked text reads, sha256 sums."""
import contextlib
import hashlib
import json
import os
import tempfile

from lora_nlg.util.errors import NLGError


@contextlib.contextmanager
def atomic_open(path, binary=False):
    """Write to a temporary file next to `path` and rename it over `path` only if the block succeeds.

    A crash or an error never leaves a half-written output, and concurrent writers of the same
    (identical) file cannot corrupt each other.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    text_args = {} if binary else {"encoding": "utf-8", "newline": "\n"}
    f = tempfile.NamedTemporaryFile("wb" if binary else "w", dir=folder, delete=False,
                                    prefix=os.path.basename(path) + ".", suffix=".partial", **text_args)
    try:
        with f:
            yield f
        os.chmod(f.name, 0o644)
        os.replace(f.name, path)
    except BaseException:
        os.unlink(f.name)
        raise


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path):
    """The whole file as UTF-8 text, exactly as stored (no newline translation); one-line errors."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except OSError as err:
        raise NLGError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise NLGError(f"{path}: not UTF-8 text") from None


def write_json(path, obj):
    """Write a JSON object (indented, keys in insertion order), atomically."""
    with atomic_open(os.fspath(path)) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
