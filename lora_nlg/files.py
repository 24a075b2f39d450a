"""Small file helpers shared by every stage: atomic writes and sha256 sums."""
import contextlib
import hashlib
import os
import tempfile


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
