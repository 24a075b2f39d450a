"""Our adapters in peft, peft's adapters in our model, merged transformers folders: logits against ours.

peft and transformers are test-only dependencies of the torch venv. The base is gpt2.tiny with random
weights (tests/alignment/fixtures.py), written as a transformers folder by lora_nlg.checkpoints.hf_export;
every comparison runs the same token ids through our GPT2LMModel and through transformers / peft.
"""
import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

from alignment.fixtures import lora_weights, random_weights
from lora_nlg.checkpoints.adapter import load_adapter, save_adapter
from lora_nlg.checkpoints.hf_export import write_hf_gpt2, write_hf_merged
from lora_nlg.checkpoints.peft_format import read_peft, write_peft
from lora_nlg.data.tokenizer import GPT2Tokenizer
from lora_nlg.model.config import GPT2Config, LoRAConfig, get_card
from lora_nlg.util.errors import CheckpointError, NLGError
from model import GPT2LMModel
from testpaths import MIRROR, VOCAB, run_script

pytestmark = pytest.mark.usefixtures("one_thread")

CARD = "gpt2.tiny"
CONFIG = get_card(CARD)
BASE = random_weights(CONFIG, seed=7, embedding_scale=5.0)  # logits within +-10: float32 steps ~1e-6
TOLERANCE = 1e-5  # max |logit difference| in float32
# ... and in float64: a conversion that copies tensors is exact; one that stores computed ones (a rescaled B,
# merged weights) in float32 rounds them (relative 6e-8)
EXACT, ROUNDED = 1e-10, 1e-6
PEFT_MODULES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
OUR_LORAS = {"q,v r=4": LoRAConfig(r=4, alpha=32, targets="q,v"),
             "attn,mlp r=8": LoRAConfig(r=8, alpha=16, dropout=0.1, targets="attn,mlp")}
# peft configs: plain; ranks and alphas per module (scales 12 / 8 on c_attn, 16 / 4, 8 / 4, 16 / 2: on import
# ranks 4 and 2 are padded to 8 and three B rescaled); rsLoRA scales
PEFT_CONFIGS = {
    "plain": dict(r=4, lora_alpha=16),
    "patterns": dict(r=4, lora_alpha=16, lora_dropout=0.1, rank_pattern={"attn.c_attn": 8, "mlp.c_proj": 2},
                     alpha_pattern={"mlp.c_fc": 8, "attn.c_attn": 12}),
    "rslora": dict(r=8, lora_alpha=8, use_rslora=True),
}
REFUSED = {  # peft LoraConfig options -> what the one-line refusal names
    "dora": (dict(use_dora=True), "use_dora = True: DoRA"),
    "bias": (dict(bias="all"), "bias = 'all' trains base biases"),
    "modules_to_save": (dict(modules_to_save=["ln_f"]), "modules_to_save = \\['ln_f'\\]"),
}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """BASE as a transformers folder, with the tokenizer files: what `hf` and the base export write."""
    return write_hf_gpt2(tmp_path_factory.mktemp("base") / "gpt2", BASE, CONFIG, VOCAB)


def hf_base(base_dir):
    return GPT2LMHeadModel.from_pretrained(base_dir).eval()


def ours(adapter):
    model = GPT2LMModel(adapter.config, adapter.lora).eval()
    model.load_weights({**BASE, **adapter.tensors})
    return model


def token_ids(seed=0):
    return torch.randint(0, CONFIG.vocab_size, (2, 24), generator=torch.Generator().manual_seed(seed))


def logits(model, ids):
    with torch.no_grad():
        return model.logits(model(ids)[0]) if isinstance(model, GPT2LMModel) else model(ids).logits


def differences(our_model, hf_model, seed=0):
    """max |logit difference| of the two models on the same ids in float32 (what users run) and in float64
    (only a conversion error shows there), and how far LoRA moved our logits from the base's."""
    ids = token_ids(seed)
    base = GPT2LMModel(CONFIG).eval()
    base.load_weights(BASE)
    got = logits(our_model, ids)
    in_float64 = logits(copy.deepcopy(our_model).double(), ids) - logits(copy.deepcopy(hf_model).double(), ids)
    return ((got - logits(hf_model, ids)).abs().max().item(), in_float64.abs().max().item(),
            (got - logits(base, ids)).abs().max().item())


def check_logits(name, our_model, hf_model, seed=0, float64_tolerance=EXACT):
    float32, float64, moved = differences(our_model, hf_model, seed)
    print(f"{name}: max |logit difference| {float32:.2e} in float32, {float64:.1e} in float64 "
          f"(LoRA moves the logits by {moved:.2f})")
    assert float32 <= TOLERANCE and float64 <= float64_tolerance and moved > 0.1


def our_adapter(stem, lora, seed=3):
    """An adapter with random non-zero A and B, saved as training saves it."""
    return save_adapter(stem, lora_weights(CONFIG, lora, seed, b_std=0.2), CONFIG, lora, CARD, 1, "pytorch")


def peft_adapter(folder, base_dir, seed=1, **options):
    """A LoRA adapter made by peft itself on the base, with every lora_B random (peft starts B at zero)."""
    torch.manual_seed(seed)
    model = get_peft_model(hf_base(base_dir), LoraConfig(target_modules=PEFT_MODULES, task_type="CAUSAL_LM",
                                                         **options))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    return model.eval()


@pytest.mark.parametrize("name", list(OUR_LORAS))
def test_our_adapter_runs_in_peft_with_our_logits(tmp_path, base_dir, name):
    stem = our_adapter(tmp_path / "run" / "model.1", OUR_LORAS[name])
    adapter = load_adapter(stem)
    write_peft(tmp_path / "peft", adapter)
    peft_model = PeftModel.from_pretrained(hf_base(base_dir), tmp_path / "peft").eval()
    scales = {n: m.scaling["default"] for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert len(scales) == CONFIG.n_layer * (1 if name.startswith("q,v") else 4)
    assert set(scales.values()) == {adapter.lora.scaling}
    check_logits(f"ours {name} in peft", ours(adapter), peft_model)


@pytest.mark.parametrize("name", list(PEFT_CONFIGS))
def test_peft_made_adapter_imports_with_peft_logits(tmp_path, base_dir, name):
    peft_model = peft_adapter(tmp_path / "peft", base_dir, **PEFT_CONFIGS[name])
    adapter = read_peft(tmp_path / "peft")
    assert (adapter.card, adapter.lora.targets) == (CARD, ("q", "k", "v", "o", "fc", "proj"))
    stem = save_adapter(tmp_path / "ours" / "model.0", adapter.tensors, adapter.config, adapter.lora,
                        adapter.card, adapter.step, adapter.framework)
    check_logits(f"peft {name} as ours (r={adapter.lora.r} alpha={adapter.lora.alpha:g})",
                 ours(load_adapter(stem)), peft_model, seed=1,
                 float64_tolerance=ROUNDED if name == "patterns" else EXACT)


def test_round_trip_through_peft_keeps_the_logits(tmp_path):
    """q,v -> peft (rank 2r on c_attn, k rows zero) -> ours (q, k, v at rank 2r): the same function."""
    adapter = load_adapter(our_adapter(tmp_path / "model.1", OUR_LORAS["q,v r=4"]))
    back = read_peft(write_peft(tmp_path / "peft", adapter))
    assert (back.lora.r, back.lora.scaling, back.lora.targets) == (8, adapter.lora.scaling, ("q", "k", "v"))
    assert not back.tensors["h.0.attn.c_attn.lora_B"][CONFIG.n_embd:2 * CONFIG.n_embd].any()  # k: no LoRA
    ids = token_ids(2)
    assert (logits(ours(adapter), ids) - logits(ours(back), ids)).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_our_adapters_cannot_hold_is_refused_in_one_line(tmp_path, base_dir, name):
    options, message = REFUSED[name]
    peft_adapter(tmp_path / "peft", base_dir, r=4, lora_alpha=16, **options)
    with pytest.raises(CheckpointError, match=message) as error:
        read_peft(tmp_path / "peft")
    assert "\n" not in str(error.value) and str(tmp_path / "peft") in str(error.value)


def test_embedding_lora_is_refused_in_one_line(tmp_path, base_dir):
    torch.manual_seed(0)
    get_peft_model(hf_base(base_dir), LoraConfig(r=4, target_modules=["wte", "attn.c_attn"])).save_pretrained(
        tmp_path / "peft")
    with pytest.raises(CheckpointError, match=r"tensor 'base_model\.model\.transformer\.wte\.lora_embedding_[AB]': "
                                              r"only LoRA on attn\.c_attn"):
        read_peft(tmp_path / "peft")


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """An attn,mlp adapter merged into BASE, as a transformers folder, loaded with the Auto classes."""
    folder = tmp_path_factory.mktemp("merged")
    adapter = load_adapter(our_adapter(folder / "run" / "model.1", OUR_LORAS["attn,mlp r=8"], seed=4))
    write_hf_merged(folder / "hf", BASE, adapter, VOCAB)
    return (adapter, AutoModelForCausalLM.from_pretrained(folder / "hf").eval(),
            AutoTokenizer.from_pretrained(folder / "hf"), folder / "hf")


def test_merged_export_loads_in_transformers_with_our_logits(merged):
    adapter, model, _, folder = merged
    check_logits("merged in transformers", ours(adapter), model, seed=3, float64_tolerance=ROUNDED)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "merges.txt", "model.safetensors",
                                                        "special_tokens_map.json", "tokenizer.json",
                                                        "tokenizer_config.json", "vocab.json"]


def test_exported_tokenizer_encodes_real_text_as_ours(merged):
    _, _, tokenizer, folder = merged
    lines = (MIRROR / "data/e2e/valid.txt").read_text(encoding="utf-8").splitlines()[::4][:1000]
    assert len(lines) == 1000
    ours_ids = GPT2Tokenizer(str(VOCAB)).encode_batch(lines)
    theirs = tokenizer(lines)["input_ids"]  # the defaults a transformers user gets
    agree = sum(a == b for a, b in zip(ours_ids, theirs))
    print(f"tokenizer: {agree} of {len(lines)} lines give identical ids")
    assert agree == len(lines)
    assert tokenizer.decode(theirs[0]) == lines[0]
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.bos_token, tokenizer.unk_token) == (
        "<|endoftext|>", 50256, "<|endoftext|>", "<|endoftext|>")
    assert tokenizer.model_max_length == CONFIG.n_positions and len(tokenizer) == CONFIG.vocab_size
    assert (folder / "vocab.json").read_bytes() == (VOCAB / "encoder.json").read_bytes()
    assert (folder / "merges.txt").read_bytes() == (VOCAB / "vocab.bpe").read_bytes()


def test_tokenizer_files_must_fit_the_model(tmp_path):
    small = GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=300, n_positions=32)
    with pytest.raises(NLGError, match="a vocabulary of 50257 tokens, but the model has vocab_size 300$"):
        write_hf_gpt2(tmp_path / "hf", random_weights(small, seed=0), small, VOCAB)
    assert not (tmp_path / "hf" / "model.safetensors").exists()


def test_export_cli_round_trip(tmp_path, base_dir):
    """peft, from-peft and hf end to end: the imported adapter computes what the exported one did."""
    stem = our_adapter(tmp_path / "run" / "model.1", OUR_LORAS["q,v r=4"])
    steps = [("peft", "--adapter", stem, "--out", tmp_path / "peft", "--base_model", base_dir),
             ("from-peft", tmp_path / "peft", "--out", tmp_path / "back" / "model.0"),
             ("hf", "--init_checkpoint", base_dir, "--adapter", tmp_path / "back" / "model.0", "--vocab", VOCAB,
              "--out", tmp_path / "hf")]
    for args in steps:
        result = run_script("scripts/export.py", *args)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert result.stdout.startswith("wrote ")
    assert json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        base_dir)
    back = load_adapter(tmp_path / "back" / "model.0")
    assert (back.card, back.framework, back.lora.targets) == (CARD, "peft", ("q", "k", "v"))
    check_logits("cli: exported, imported, merged", ours(load_adapter(stem)),
                 AutoModelForCausalLM.from_pretrained(tmp_path / "hf"), float64_tolerance=ROUNDED)


def test_export_cli_reports_bad_input_in_one_line(tmp_path, base_dir):
    cases = [(("from-peft", tmp_path / "absent", "--out", tmp_path / "x"),
              f"{tmp_path / 'absent'}: not a peft adapter folder (no such directory)"),
             (("from-peft", base_dir, "--out", tmp_path / "x"),
              f"{base_dir / 'adapter_config.json'}: file not found"),
             (("peft", "--adapter", tmp_path / "missing", "--out", tmp_path / "peft"),
              f"{tmp_path / 'missing'}.json: file not found"),
             (("hf", "--adapter", our_adapter(tmp_path / "model.1", OUR_LORAS["q,v r=4"]), "--vocab", VOCAB,
               "--out", tmp_path / "hf"), "--init_checkpoint: required")]
    for args, message in cases:
        result = run_script("scripts/export.py", *args)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, result.stderr


def test_a_full_weights_adapter_has_no_peft_export(tmp_path):
    stem = save_adapter(tmp_path / "model.1", BASE, CONFIG, LoRAConfig(r=0), CARD, 1, "pytorch")
    with pytest.raises(CheckpointError, match="holds full weights .r = 0., no LoRA for peft: export it with `hf`"):
        write_peft(tmp_path / "peft", load_adapter(stem))
