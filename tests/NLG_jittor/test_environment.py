"""The Jittor venv: no torch in it, Jittor configured automatically, shared code importable."""
import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_torch_is_absent():
    assert importlib.util.find_spec("torch") is None


def test_jittor_matmul_matches_numpy():
    from jittor_env import jt
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 48)).astype("float32"), rng.standard_normal((48, 32)).astype("float32")
    np.testing.assert_allclose((jt.array(a) @ jt.array(b)).numpy(), a @ b, rtol=1e-5, atol=1e-5)


def test_shared_modules_import_here():
    for p in sorted((ROOT / "lora_nlg").rglob("*.py")):
        importlib.import_module(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
