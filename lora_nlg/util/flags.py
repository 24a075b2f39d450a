"""Flag checks shared by the train and beam CLIs of both trees, and argparse types of the data CLIs."""
import argparse
import re

from lora_nlg.util.errors import NLGError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")  # --device values; each tree checks that the device exists
EXACT_HELP = ("on CUDA: float32 matmuls in full float32 (default there: TF32 tensor cores, a 10-bit mantissa in "
              "the products, ~1e-3 relative) and the written-out attention instead of the fused one; no effect on "
              "CPU, which always computes this way")


def positive_int(text):
    """argparse type: an int of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


class DeviceError(NLGError):
    """A --device this machine cannot run on (a one-line user error)."""


def reproducibility(device_type, deterministic):
    """What the log says about run-to-run reproducibility on `device_type`, with or without --deterministic.

    On CPU both trees are bit-reproducible as they are (fixed-order reductions, sorted checkpoint headers; tested:
    tests/alignment/determinism_cases.py). On CUDA some kernels add in a varying order (atomics) unless the
    framework's deterministic algorithms are asked for, which costs speed."""
    if device_type != "cuda":
        return "bit-reproducible (CPU)"
    return "deterministic algorithms (CUDA)" if deterministic else "not bit-reproducible (CUDA; --deterministic)"


def matmul_precision(device_type, exact):
    """How float32 matmuls run on `device_type` ("cuda" or "cpu"), with or without --exact, as the logs say it.

    "tf32" on CUDA by default (tensor cores: float32 in and out, products rounded to TF32), "float32 (exact)"
    on CUDA under --exact, "float32" on CPU, which has no TF32. Each tree's model.set_matmul_precision
    switches its framework accordingly."""
    if device_type != "cuda":
        return "float32"
    return "float32 (exact)" if exact else "tf32"
