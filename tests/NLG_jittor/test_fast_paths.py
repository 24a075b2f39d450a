"""Jittor's side of tests/NLG_pytorch/test_fast_paths.py, as far as Jittor has the fast paths.

- attention: Jittor 1.3.11 has no fused attention, so "sdpa" is refused and "auto" is the written-out path;
- the key/value cache: a KVCache (setitem writes, gathered rows) gives the bits of the concatenating cache,
  and beam search with it predicts byte-identically (Jittor's default stays the concatenating path: faster);
- AdamW: Jittor has no _foreach ops; foreach=True is refused, the loop is the only path.
"""
import numpy as np
import pytest

import gpt2_beam
from alignment.beam_cases import SETTINGS, decode_with, eos_prone_weights, random_prompts
from alignment.fixtures import SMALL, lora_weights, random_weights, token_ids
from jittor_env import jt
from lora_nlg.decode.beam import BeamSettings
from lora_nlg.model.config import LoRAConfig
from model import GPT2LMModel, KVCache
from optim import AdamW

LORA = LoRAConfig(r=4, alpha=32, targets="q,v,o,fc,proj", dropout=0.0)


def test_jittor_has_no_fused_attention_nor_foreach():
    with pytest.raises(ValueError, match="no fused attention"):
        GPT2LMModel(SMALL, attention="sdpa")
    with pytest.raises(ValueError, match="attention='flash'"):
        GPT2LMModel(SMALL, attention="flash")
    assert not GPT2LMModel(SMALL).h[0].attn.use_sdpa(jt.zeros(1))
    with pytest.raises(ValueError, match="no _foreach ops"):
        AdamW([("p", jt.zeros(2))], foreach=True)
    with pytest.raises(ValueError, match="cache='ring'"):
        gpt2_beam.beam_search(GPT2LMModel(SMALL), None, SETTINGS[0], cache="ring")


def test_pad_queries_see_themselves_and_stay_finite():
    model = GPT2LMModel(SMALL, LORA).eval()
    model.load_weights({**random_weights(seed=0), **lora_weights(SMALL, LORA, seed=0)})
    _, blocked = model.attention_layout(4, 0, jt.array([2, 0]))
    assert blocked.numpy()[0, 0].tolist() == [[False, True, True, True], [True, False, True, True],
                                              [True, True, False, True], [True, True, False, False]]
    with jt.no_grad():
        hidden, _ = model(jt.array(token_ids((2, 6), seed=1)), left_pad=jt.array([5, 0]))
    assert np.isfinite(hidden.numpy()).all()


def test_kv_cache_gives_the_bits_of_the_concatenating_cache():
    """Prompt, then steps that reorder the rows as beam search does: grow, permute, shrink, identity."""
    model = GPT2LMModel(SMALL, LORA).eval()
    model.load_weights({**random_weights(seed=0), **lora_weights(SMALL, LORA, seed=0)})
    lengths = [4, 9]
    ids = jt.array(token_ids((2, max(lengths)), seed=4))
    left_pad = jt.array([max(lengths) - n for n in lengths])
    orders = [[0, 0, 0, 1, 1, 1], [2, 0, 1, 5, 5, 3], [3, 4, 5], [0, 1, 2], [2, 2, 0]]
    cache = KVCache(6, ids.shape[1] + len(orders))
    with jt.no_grad():
        hidden, past = model(ids, left_pad=left_pad)
        written, cache = model(ids, past=cache, left_pad=left_pad)
        assert np.array_equal(written.numpy(), hidden.numpy())
        pad = left_pad
        for step, order in enumerate(orders):
            parents = jt.array(np.array(order))
            past, pad = [(k[parents], v[parents]) for k, v in past], pad[parents]
            cache.reorder(parents)
            tokens = jt.array(token_ids((len(order), 1), seed=10 + step))
            hidden, past = model(tokens, past=past, left_pad=pad)
            written, cache = model(tokens, past=cache, left_pad=pad)
            assert np.array_equal(written.numpy(), hidden.numpy()), step
            assert cache.rows == len(order) and cache.length == ids.shape[1] + step + 1
        with pytest.raises(ValueError, match="KVCache of 6 x 14"):
            model(tokens, past=cache, left_pad=pad)  # every slot is taken


@pytest.fixture(scope="module")
def eos_prone_model():
    model = GPT2LMModel(SMALL).eval()
    model.load_weights(eos_prone_weights())
    return model


@pytest.mark.parametrize("beam", [1, 10])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_beam_search_with_the_preallocated_cache_predicts_byte_identically(eos_prone_model, beam, batch_size):
    settings = BeamSettings(beam=beam, eval_len=16, length_penalty=0.8, no_repeat_ngram_size=3,
                            repetition_penalty=1.3, eos_ids=SETTINGS[0].eos_ids)
    prompts = random_prompts(n=14)
    predictions = {cache: decode_with(lambda m, b, s: gpt2_beam.beam_search(m, b, s, cache=cache), eos_prone_model,
                                      prompts, settings, batch_size) for cache in ("preallocated", "concat")}
    assert predictions["preallocated"] == predictions["concat"]
    assert min(len(p) for p in predictions["concat"]) < settings.eval_len  # some ended early
