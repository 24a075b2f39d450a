"""Real torch / transformers checkpoints: HF directories, torch .bin read without torch, legacy files, adapters."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from alignment.fixtures import SMALL, lora_weights, random_weights
from hf_reference import hf_model
from lora import set_trainable, trainable_state_dict
from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.checkpoints.gpt2_weights import canonical_tensors, load_gpt2_weights
from lora_nlg.checkpoints.tensor_files import read_tensors
from lora_nlg.model.config import LoRAConfig, lora_shapes
from lora_nlg.model.init_weights import init_lora_weights
from lora_nlg.util.errors import CheckpointError
from model import GPT2LMModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
WEIGHTS = random_weights(seed=5)


@pytest.fixture(scope="module")
def hf():
    return hf_model(WEIGHTS)


def _ours(weights):
    model = GPT2LMModel(SMALL).eval()
    model.load_weights(weights)
    return model


def _assert_same_logits(model, hf_reference):
    ids = torch.randint(0, SMALL.vocab_size, (2, 16))
    with torch.no_grad():
        expected = hf_reference(ids).logits
        got = model.logits(model(ids)[0])
    assert (got - expected).abs().max().item() <= 1e-5


def test_save_pretrained_directory_loads_and_matches(tmp_path, hf):
    hf.save_pretrained(tmp_path / "hf")
    _assert_same_logits(_ours(load_gpt2_weights(tmp_path / "hf", SMALL)), hf)


def test_pytorch_model_bin_loads_and_matches(tmp_path, hf):
    """transformers 5 writes only safetensors; a 4.x `pytorch_model.bin` was torch.save(state_dict),
    with the tied lm_head.weight and, in older versions, the attention mask buffers."""
    state = hf.state_dict()
    for i in range(SMALL.n_layer):
        state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    (tmp_path / "hf").mkdir()
    torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
    _assert_same_logits(_ours(load_gpt2_weights(tmp_path / "hf", SMALL)), hf)


def test_missing_or_misshaped_key_in_a_bin_is_named(tmp_path, hf):
    state = {k: v for k, v in hf.state_dict().items() if k != "transformer.h.1.ln_2.bias"}
    torch.save(state, tmp_path / "missing.bin")
    with pytest.raises(CheckpointError, match=r"missing\.bin: missing keys: h\.1\.ln_2\.bias$"):
        load_gpt2_weights(tmp_path / "missing.bin", SMALL)
    state = dict(hf.state_dict(), **{"transformer.wpe.weight": torch.zeros(32, SMALL.n_embd)})
    torch.save(state, tmp_path / "short.bin")
    with pytest.raises(CheckpointError, match=r"shape mismatch: wpe\.weight \(32, 64\) != expected \(64, 64\)$"):
        load_gpt2_weights(tmp_path / "short.bin", SMALL)


def _odd_tensors():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "transposed": base.t(),  # non-contiguous strides
        "row": base[2],  # a view at a storage offset, sharing storage with "transposed"
        "half": torch.linspace(-2, 2, 7, dtype=torch.float16),
        "bf16": torch.linspace(-3, 3, 5, dtype=torch.bfloat16),
        "double": torch.tensor([[1.5, -2.25]], dtype=torch.float64),
        "long": torch.tensor([3, -4, 5]),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(7.5),
        "param": torch.nn.Parameter(torch.full((2, 2), 0.5)),
    }


def _as_numpy(t):
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def test_torch_zip_reader_handles_dtypes_views_and_wrappers(tmp_path):
    tensors = _odd_tensors()
    torch.save(tensors, tmp_path / "odd.bin")
    torch.save({"model_state_dict": tensors}, tmp_path / "wrapped.pt")  # microsoft/LoRA's checkpoint layout
    for name in ("odd.bin", "wrapped.pt"):
        loaded = read_tensors(tmp_path / name)
        assert list(loaded) == list(tensors)
        for key, t in tensors.items():
            assert loaded[key].dtype == _as_numpy(t).dtype and np.array_equal(loaded[key], _as_numpy(t)), key


def test_jittor_venv_reads_a_torch_bin_without_torch(tmp_path, hf):
    """The Jittor tree has no torch at all: the same file must load there to the same weights."""
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    code = ("import sys, numpy as np\n"
            "from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights\n"
            "from lora_nlg.model.config import GPT2Config\n"
            f"w = load_gpt2_weights(sys.argv[1], GPT2Config(**{SMALL.to_dict()!r}))\n"
            "assert 'torch' not in sys.modules\n"
            "print(repr(sum(float(np.abs(v).astype(np.float64).sum()) for v in w.values())))\n")
    python = ROOT / ".venv-jittor" / "bin" / "python"
    result = subprocess.run([str(python), "-c", code, str(tmp_path / "pytorch_model.bin")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = sum(float(np.abs(w).astype(np.float64).sum()) for w in WEIGHTS.values())
    assert float(result.stdout) == pytest.approx(expected, rel=1e-12)


def test_legacy_torch_file_error_names_the_converter_which_converts_it(tmp_path, hf):
    legacy = tmp_path / "gpt2-small-pytorch_model.bin"
    torch.save({k[len("transformer."):]: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}, legacy,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as info:
        load_gpt2_weights(legacy, SMALL)
    assert "legacy (pre-1.6) torch checkpoint" in str(info.value) and "scripts/convert_checkpoint.py" in str(info.value)
    converted = tmp_path / "converted.safetensors"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_checkpoint.py"), str(legacy),
                             str(converted)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    _assert_same_logits(_ours(load_gpt2_weights(converted, SMALL)), hf)


def test_converter_reports_a_bad_input_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_checkpoint.py"),
                             str(tmp_path / "absent.bin"), str(tmp_path / "out.safetensors")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'absent.bin'}: file not found\n"


def test_official_microsoft_lora_adapter_loads(tmp_path):
    """gpt2_ft.py saves {'model_state_dict': lora_state_dict(model)}: keys `transformer.h.i.attn.c_attn.lora_A`."""
    lora = LoRAConfig(r=4, alpha=32, targets="q,v")
    tensors = init_lora_weights(SMALL, lora, seed=3)
    torch.save({"model_state_dict": {"transformer." + n: torch.from_numpy(w) for n, w in tensors.items()}},
               tmp_path / "model.26290.pt")
    path = str(tmp_path / "model.26290.pt")
    loaded = canonical_tensors(read_tensors(path), lora_shapes(SMALL, lora), path)
    assert all(np.array_equal(loaded[n], tensors[n]) for n in tensors) and list(loaded) == list(tensors)


@pytest.mark.parametrize("lora", [LoRAConfig(r=4, alpha=32, targets="q,v,proj"), LoRAConfig(r=0)])
def test_adapter_from_a_trained_model_rebuilds_it(tmp_path, lora):
    model = GPT2LMModel(SMALL, lora).eval()
    model.load_weights({**WEIGHTS, **lora_weights(SMALL, lora)})
    set_trainable(model, lora)
    state = model.numpy_weights(list(trainable_state_dict(model)))
    stem = save_adapter(tmp_path / "model.3", state, SMALL, lora, "custom", 3, "pytorch")
    adapter = load_adapter(stem)
    rebuilt = GPT2LMModel(adapter.config, adapter.lora).eval()
    rebuilt.load_weights({**WEIGHTS, **adapter.tensors})
    ids = torch.randint(0, SMALL.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(rebuilt.logits(rebuilt(ids)[0]), model.logits(model(ids)[0]))
