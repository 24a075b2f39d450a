"""Cards, LoRA target parsing, trainable counts, and the numpy initialisers (framework-free)."""
import json
import math

import numpy as np
import pytest

from lora_nlg.checkpoints.hf_export import hf_config
from lora_nlg.model.config import (
    CARDS,
    CardError,
    GPT2Config,
    LoRAConfig,
    card_from_hf_config,
    count_parameters,
    count_trainable,
    get_card,
    lora_shapes,
    param_shapes,
    parse_targets,
)
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights

TINY = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=500, n_positions=64)


def test_cards_have_the_published_shapes():
    assert [(c.n_layer, c.n_embd, c.n_head) for c in CARDS.values()] == [
        (4, 128, 4), (12, 768, 12), (24, 1024, 16), (36, 1280, 20)]
    assert all(c.vocab_size == 50257 and c.n_positions == 1024 and c.layer_norm_epsilon == 1e-5
               for c in CARDS.values())


def test_total_parameter_counts_equal_the_released_gpt2_models():
    # Hugging Face num_parameters() of gpt2 / gpt2-medium / gpt2-large (tied LM head counted once)
    counts = {name: count_parameters(param_shapes(get_card(name))) for name in ("gpt2.sm", "gpt2.md", "gpt2.lg")}
    assert counts == {"gpt2.sm": 124_439_808, "gpt2.md": 354_823_168, "gpt2.lg": 774_030_080}


def test_trainable_counts_r4_on_q_v():
    lora = LoRAConfig(r=4, targets="q,v")
    counts = {name: count_trainable(get_card(name), lora) for name in ("gpt2.sm", "gpt2.md", "gpt2.lg")}
    print("trainable (r=4, q,v):", counts)
    assert counts["gpt2.md"] == 393_216  # the paper's Table 2 / 3 figure for GPT-2 M
    for name, count in counts.items():  # per layer: two slices of r * n_embd (A) + n_embd * r (B)
        config = get_card(name)
        assert count == config.n_layer * 2 * (4 * config.n_embd + config.n_embd * 4)


def test_r0_means_every_weight_trains():
    assert count_trainable(TINY, LoRAConfig(r=0)) == count_parameters(param_shapes(TINY))
    assert lora_shapes(TINY, LoRAConfig(r=0)) == {}


def test_unknown_card_names_the_card():
    with pytest.raises(CardError, match="gpt2.xxl"):
        get_card("gpt2.xxl")


@pytest.mark.parametrize("text, targets", [
    ("q,v", ("q", "v")),
    ("v, q", ("q", "v")),
    ("attn", ("q", "k", "v", "o")),
    ("mlp,q", ("q", "fc", "proj")),
    ("attn,mlp,q", ("q", "k", "v", "o", "fc", "proj")),
])
def test_parse_targets(text, targets):
    assert parse_targets(text) == targets


@pytest.mark.parametrize("text", ["", " , ", "q,x", "ffn"])
def test_bad_targets_are_rejected(text):
    with pytest.raises(CardError):
        parse_targets(text)


def test_lora_config_normalises_targets_and_scaling():
    lora = LoRAConfig(r=8, alpha=16, targets=("v", "q"))
    assert lora.targets == ("q", "v") and lora.scaling == 2.0
    assert LoRAConfig.from_dict(lora.to_dict()) == lora
    assert LoRAConfig(r=0).scaling == 0.0
    with pytest.raises(CardError):
        LoRAConfig(r=-1)


def test_lora_shapes_follow_loralib_layout():
    shapes = lora_shapes(TINY, LoRAConfig(r=4, targets="q,v,o,fc,proj"))
    d = TINY.n_embd
    assert shapes["h.0.attn.c_attn.lora_A"] == (8, d)  # r * 2 enabled slices
    assert shapes["h.0.attn.c_attn.lora_B"] == (2 * d, 4)
    assert shapes["h.1.attn.c_proj.lora_A"] == (4, d) and shapes["h.1.attn.c_proj.lora_B"] == (d, 4)
    assert shapes["h.1.mlp.c_fc.lora_A"] == (4, d) and shapes["h.1.mlp.c_fc.lora_B"] == (4 * d, 4)
    assert shapes["h.1.mlp.c_proj.lora_A"] == (4, 4 * d) and shapes["h.1.mlp.c_proj.lora_B"] == (d, 4)
    assert len(shapes) == TINY.n_layer * 4 * 2


def test_gpt2_init_is_deterministic_and_gpt2_like():
    a, b, c = init_gpt2_weights(TINY, 1), init_gpt2_weights(TINY, 1), init_gpt2_weights(TINY, 2)
    assert list(a) == list(param_shapes(TINY))
    assert all(a[n].dtype == np.float32 and a[n].shape == s for n, s in param_shapes(TINY).items())
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["wte.weight"], c["wte.weight"])
    assert abs(a["wte.weight"].std() - 0.02) < 0.001 and abs(a["wte.weight"].mean()) < 0.001
    residual_std = 0.02 / math.sqrt(2 * TINY.n_layer)
    assert abs(a["h.0.mlp.c_proj.weight"].std() - residual_std) < 0.1 * residual_std
    assert abs(a["h.1.mlp.c_fc.weight"].std() - 0.02) < 0.002
    assert all(not a[n].any() for n in a if n.endswith(".bias"))
    assert (a["h.1.ln_2.weight"] == 1).all() and (a["ln_f.weight"] == 1).all()


def test_lora_init_is_kaiming_uniform_a_and_zero_b():
    lora = LoRAConfig(r=4, targets="q,v,proj")
    a, b = init_lora_weights(TINY, lora, 3), init_lora_weights(TINY, lora, 3)
    assert {n: w.shape for n, w in a.items()} == lora_shapes(TINY, lora)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    for name, w in a.items():
        assert w.dtype == np.float32
        if name.endswith("lora_B"):
            assert not w.any()
        else:
            bound = 1.0 / math.sqrt(w.shape[1])
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
            assert abs(w.std() - bound / math.sqrt(3)) < 0.15 * bound  # std of U(-b, b) is b / sqrt(3)


def test_a_hugging_face_config_json_gives_its_shape(tmp_path):
    shape = GPT2Config(n_embd=768, n_layer=6, n_head=12)  # distilgpt2's
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**hf_config(shape), "n_inner": None}))
    assert get_card(str(path)) == card_from_hf_config(str(path)) == shape
    for change, message in [({"n_inner": 100}, "n_inner 100"), ({"activation_function": "relu"}, "relu"),
                            ({"n_layer": "6"}, "no integer n_layer"), ({"model_type": "llama"}, "not a GPT-2")]:
        path.write_text(json.dumps({**hf_config(shape), **change}))
        with pytest.raises(CardError, match=message):
            get_card(str(path))
    path.write_text("{")
    with pytest.raises(CardError, match="not a JSON model config"):
        get_card(str(path))
    with pytest.raises(CardError, match="unknown model card 'gpt2.xs'"):
        get_card("gpt2.xs")
