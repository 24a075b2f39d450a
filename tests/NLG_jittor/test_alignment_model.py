"""Jittor against PyTorch on identical weights and batches: logits, loss, gradients, one AdamW step, adapters.

The PyTorch values come from tests/alignment/torch_reference.py, run in .venv-torch as a subprocess
(the two frameworks never share a process); every input, weights included, is read from its files.
"""
import json
from typing import NamedTuple

import numpy as np
import pytest

from alignment.torch_side import run_torch_script
from jittor_env import jt
from lora import set_trainable, trainable_state_dict
from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.model.config import LoRAConfig, get_card
from model import GPT2LMModel
from optim import AdamW, clip_grad_norm

REFERENCE_SCRIPT = "torch_reference.py"  # in tests/alignment
CASES = ("lora_qv", "lora_attn_mlp", "full")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_reference")
    run_torch_script(REFERENCE_SCRIPT, out)
    meta = json.loads((out / "cases.json").read_text())
    base = dict(np.load(out / "base.npz"))
    weights = {k[len("weight."):]: v for k, v in base.items() if k.startswith("weight.")}
    return out, meta, base, weights


def _case(reference, name):
    out, meta, base, weights = reference
    arrays = dict(np.load(out / f"{name}.npz"))
    lora = LoRAConfig.from_dict(meta["cases"][name])
    weights = {**weights, **{k[len("weight."):]: v for k, v in arrays.items() if k.startswith("weight.")}}
    return meta, base, lora, weights, arrays


def _rel(got, expected):
    """max |got - expected| / max |expected|: one number per tensor, scale-free."""
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _rel_norm(got, expected):
    """||got - expected|| / ||expected|| (Frobenius)."""
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


class Run(NamedTuple):
    """What Jittor computed for one case, beside torch's `arrays` and the `weights` both started from."""
    model: GPT2LMModel
    optimizer: AdamW
    logits: np.ndarray
    loss: float
    n_tokens: int
    grads: dict
    total_norm: float
    arrays: dict
    weights: dict


def _train_one_step(meta, base, lora, weights, arrays):
    """The reference's forward, loss, backward, clip and AdamW step, in Jittor."""
    model = GPT2LMModel(get_card(meta["card"]), lora)
    model.load_weights(weights)
    set_trainable(model, lora)
    model.train()
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad],
                      weight_decay=meta["weight_decay"])
    hidden, _ = model(jt.array(base["input"]))
    logits = model.logits(hidden).numpy()
    loss, n_tokens = model.loss(hidden, jt.array(base["target"]), jt.array(base["mask"]), meta["label_smooth"])
    optimizer.backward(loss)
    grads = {name: g.numpy().copy() for name, g in optimizer.grads.items()}
    total_norm = float(clip_grad_norm(optimizer.grads.values(), meta["clip"]))
    optimizer.step(meta["lr"])
    return Run(model, optimizer, logits, float(loss.item()), n_tokens, grads, total_norm, arrays, weights)


@pytest.fixture(scope="module")
def jittor_runs(reference):
    return {name: _train_one_step(*_case(reference, name)) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_logits_and_loss_equal_torch(jittor_runs, name):
    run = jittor_runs[name]
    diff = float(np.abs(run.logits - run.arrays["logits"]).max())
    print(f"{name}: logits max abs diff {diff:.2e}, loss rel diff {abs(run.loss / run.arrays['loss'] - 1):.2e}")
    assert diff <= 1e-4
    assert abs(run.loss - run.arrays["loss"]) <= 1e-5 * abs(run.arrays["loss"])
    assert run.n_tokens == int(run.arrays["n_tokens"]) > 0


@pytest.mark.parametrize("name", CASES)
def test_gradients_equal_torch(reference, jittor_runs, name):
    run = jittor_runs[name]
    grads = run.grads
    expected = {k[len("grad."):]: v for k, v in run.arrays.items() if k.startswith("grad.")}
    assert set(grads) == set(expected) and len(expected) > 0
    worst = max(expected, key=lambda n: _rel(grads[n], expected[n]))
    print(f"{name}: {len(grads)} gradients, worst rel diff {_rel(grads[worst], expected[worst]):.2e} ({worst})")
    for n in expected:
        assert np.abs(expected[n]).max() > 0, n  # every trained tensor has a gradient worth comparing
        assert _rel(grads[n], expected[n]) <= 1e-4, n
    assert run.total_norm == pytest.approx(float(run.arrays["total_norm"]), rel=1e-5)
    assert run.total_norm > reference[1]["clip"]  # so the step compared below ran with clipping


@pytest.mark.parametrize("name", CASES)
def test_one_adamw_step_equals_torch(jittor_runs, name):
    """Compared as a norm ratio: a first Adam step moves each value by about lr * g / (|g| + eps), which
    magnifies the gradients' float32 rounding wherever |g| is near eps = 1e-6 (a single value can then
    differ by ~1e-5 of the largest one, e.g. in a bias that starts at 0)."""
    run = jittor_runs[name]
    stepped = run.model.numpy_weights(list(run.optimizer.params))
    worst = max(stepped, key=lambda n: _rel_norm(stepped[n], run.arrays[f"stepped.{n}"]))
    print(f"{name}: {len(stepped)} updated tensors, worst rel diff (norm) "
          f"{_rel_norm(stepped[worst], run.arrays[f'stepped.{worst}']):.2e} ({worst})")
    for n, w in stepped.items():
        expected = run.arrays[f"stepped.{n}"]
        assert not np.array_equal(expected, run.weights[n]), n  # torch moved it
        assert _rel_norm(w, expected) <= 1e-5, n


@pytest.mark.parametrize("name", CASES)
def test_adamw_from_torch_gradients_equals_torch_step(reference, name):
    """The clip and the update alone, from torch's own gradients: Jittor's arithmetic must agree to rounding."""
    meta, _, lora, weights, arrays = _case(reference, name)
    model = GPT2LMModel(get_card(meta["card"]), lora)
    model.load_weights(weights)
    set_trainable(model, lora)
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad],
                      weight_decay=meta["weight_decay"])
    optimizer.grads = {n: jt.array(arrays[f"grad.{n}"]) for n in optimizer.params}
    total_norm = float(clip_grad_norm(optimizer.grads.values(), meta["clip"]))
    assert total_norm == pytest.approx(float(arrays["total_norm"]), rel=1e-6)
    optimizer.step(meta["lr"])
    stepped = model.numpy_weights(list(optimizer.params))
    worst = max(_rel(w, arrays[f"stepped.{n}"]) for n, w in stepped.items())
    print(f"{name}: AdamW step from torch's gradients, worst rel diff {worst:.2e}")
    assert worst <= 1e-6


def test_torch_adapter_loads_in_jittor_with_the_same_logits(reference):
    out, meta, base, weights = reference
    expected = np.load(out / "lora_qv.npz")["adapter_logits"]
    adapter = load_adapter(meta["adapter"])
    assert adapter.framework == "pytorch" and adapter.step == 1
    model = GPT2LMModel(adapter.config, adapter.lora).eval()
    model.load_weights({**weights, **adapter.tensors})
    logits = model.logits(model(jt.array(base["input"]))[0]).numpy()
    print(f"torch adapter in jittor: logits max abs diff {np.abs(logits - expected).max():.2e}")
    assert np.abs(logits - expected).max() <= 1e-4


def test_jittor_adapter_loads_in_torch_with_the_same_logits(reference, jittor_runs, tmp_path):
    out, meta, base, _ = reference
    model = jittor_runs["lora_attn_mlp"].model  # after its Jittor step
    state = model.numpy_weights(list(trainable_state_dict(model)))
    stem = save_adapter(tmp_path / "model.1", state, model.config, model.lora, meta["card"], 1, "jittor")
    model.eval()
    logits = model.logits(model(jt.array(base["input"]))[0]).numpy()
    run_torch_script(REFERENCE_SCRIPT, "--adapter", stem, "--base", out / "base.npz", "--out",
                     tmp_path / "torch_logits.npz")
    expected = np.load(tmp_path / "torch_logits.npz")["logits"]
    print(f"jittor adapter in torch: logits max abs diff {np.abs(logits - expected).max():.2e}")
    assert np.abs(logits - expected).max() <= 1e-4
