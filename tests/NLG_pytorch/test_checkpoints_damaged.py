"""Damaged torch `.bin` checkpoints: a one-line error naming the file and the problem, in both venvs (never a crash)."""
import pathlib
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from lora_nlg.checkpoints.tensor_files import read_tensors
from lora_nlg.util.errors import CheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[2]
READ_CLI = ("import sys\nfrom lora_nlg.checkpoints.tensor_files import read_tensors\n"
            "from lora_nlg.util.errors import run_cli\nrun_cli(lambda argv: read_tensors(argv[0]), sys.argv[1:])\n")


def _saved(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"wte.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
                "h.0.ln_1.weight": torch.ones(4)}, path)
    return path


def _rewritten(src, dst, change):
    """A copy of the zip `src` in which change(name, data) -> data edits each member (CRCs recomputed)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            new.writestr(info, change(info.filename, old.read(info.filename)))
    return dst


def _storage_shortened(tmp_path, keep_bytes):
    src = _saved(tmp_path)
    with zipfile.ZipFile(src) as archive:
        biggest = max((n for n in archive.namelist() if "/data/" in n), key=lambda n: archive.getinfo(n).file_size)
    return _rewritten(src, tmp_path / "short.bin",
                      lambda name, data: data[:keep_bytes] if name == biggest else data)


def test_intact_checkpoint_reads_back(tmp_path):
    tensors = read_tensors(_saved(tmp_path))
    assert np.array_equal(tensors["wte.weight"], np.arange(12, dtype=np.float32).reshape(3, 4))


def test_storage_shorter_than_its_tensor_is_an_error_not_a_segfault(tmp_path):
    path = _storage_shortened(tmp_path, keep_bytes=8 * 4)  # 8 of the 12 floats
    with pytest.raises(CheckpointError, match=r"shape \[3, 4\] needs 12 elements of its storage, which holds 8"):
        read_tensors(path)


def test_storage_of_partial_elements_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a whole number of FloatStorage elements"):
        read_tensors(_storage_shortened(tmp_path, keep_bytes=10))


def test_truncated_zip_is_called_damaged(tmp_path):
    data = _saved(tmp_path).read_bytes()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged zip archive"):
        read_tensors(path)


def test_missing_storage_member_is_an_error(tmp_path):
    src = _saved(tmp_path)
    path = tmp_path / "missing.bin"
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            if not info.filename.endswith("/data/0"):
                new.writestr(info, old.read(info.filename))
    with pytest.raises(CheckpointError, match="damaged torch checkpoint"):
        read_tensors(path)


@pytest.mark.parametrize("venv", [".venv-torch", ".venv-jittor"])
def test_both_venvs_exit_2_with_one_line(tmp_path, venv):
    path = _storage_shortened(tmp_path, keep_bytes=8 * 4)
    result = subprocess.run([str(ROOT / venv / "bin" / "python"), "-c", READ_CLI, str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {path}: a tensor of shape [3, 4]")
