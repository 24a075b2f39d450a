"""The fast paths against the written-out reference paths they replace, on CPU.

- attention: torch's scaled_dot_product_attention vs scores / masked_fill / softmax / @ v (GPT2LMModel's
  `attention="sdpa"` vs `"reference"`): logits and LoRA gradients within 1e-5 relative, in training (causal,
  with LoRA dropout 0 and 0.1, with left padding too) and in cached decoding with left padding;
- the key/value cache: a preallocated KVCache written and reordered in place vs the (k, v) pairs each step
  concatenates to: the same bits, and beam search gives byte-identical predictions;
- AdamW: torch._foreach_* ops vs the per-tensor loop: the same bits (torch.equal) after every step.
"""
import numpy as np
import pytest
import torch

from alignment.beam_cases import SETTINGS, decode_with, eos_prone_weights, random_prompts
from alignment.fixtures import SMALL, lora_weights, random_weights, synthetic_batch, token_ids
from gpt2_beam import beam_search
from lora import set_trainable
from lora_nlg.decode.beam import BeamSettings
from lora_nlg.model.config import LoRAConfig
from model import GPT2LMModel, KVCache
from optim import AdamW

pytestmark = pytest.mark.usefixtures("one_thread")

RELATIVE = 1e-5  # SDPA vs the written-out attention, relative to the largest value compared
LORA = LoRAConfig(r=4, alpha=32, targets="q,v,o,fc,proj", dropout=0.0)


def models(lora=LORA, weights=None):
    """The same weights in a model of each attention path."""
    weights = weights or {**random_weights(seed=0), **lora_weights(SMALL, lora, seed=0)}
    pair = {}
    for attention in ("sdpa", "reference"):
        pair[attention] = GPT2LMModel(SMALL, lora, attention=attention)
        pair[attention].load_weights(weights)
    return pair


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def left_padded(lengths, seed=0):
    """Random prompts of `lengths`, left-padded with random (junk) ids, and their left_pad."""
    width = max(lengths)
    ids = torch.from_numpy(token_ids((len(lengths), width), seed=seed))
    return ids, torch.tensor([width - n for n in lengths])


def test_unknown_paths_are_refused():
    with pytest.raises(ValueError, match="attention='flash'"):
        GPT2LMModel(SMALL, attention="flash")
    with pytest.raises(ValueError, match="cache='ring'"):
        beam_search(GPT2LMModel(SMALL), None, SETTINGS[0], cache="ring")


def test_pad_queries_see_only_themselves_so_no_row_is_all_blocked():
    _, blocked = GPT2LMModel(SMALL).attention_layout(4, 0, torch.tensor([2, 0]))
    assert blocked[0, 0].tolist() == [[False, True, True, True], [True, False, True, True],
                                      [True, True, False, True], [True, True, False, False]]
    assert not blocked.all(-1).any()


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_sdpa_training_logits_and_lora_gradients_equal_the_reference(dropout, padding):
    """A training forward / backward (loss over the completion tokens) through each path: LoRA dropout 0.1 draws
    the same masks in both (same seed, same order of draws)."""
    lora = LoRAConfig(r=4, alpha=32, targets="q,v,o,fc,proj", dropout=dropout)
    batch = synthetic_batch(n=4, seed=1)  # right-padded rows of different lengths, mask on the completions
    ids, target, mask = (torch.from_numpy(a) for a in (batch.input, batch.target, batch.mask))
    left_pad = torch.tensor([0, 3, 1, 5]) if padding == "left" else None
    logits, grads = {}, {}
    for attention, model in models(lora).items():
        set_trainable(model, lora)
        model.train()
        torch.manual_seed(7)
        hidden, _ = model(ids, left_pad=left_pad)
        loss, _ = model.loss(hidden, target, mask, label_smooth=0.1)
        loss.backward()
        logits[attention] = model.logits(hidden).detach()
        grads[attention] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert torch.isfinite(logits["sdpa"]).all()
    assert relative(logits["sdpa"], logits["reference"]) <= RELATIVE
    assert set(grads["sdpa"]) == set(grads["reference"]) and len(grads["sdpa"]) == 4 * SMALL.n_layer * 2
    for name, g in grads["reference"].items():
        assert g.abs().max() > 0, name
        assert relative(grads["sdpa"][name], g) <= RELATIVE, name


@pytest.mark.parametrize("cache", ["preallocated", "concat"])
def test_sdpa_cached_decoding_with_left_padding_equals_the_reference(cache):
    ids, left_pad = left_padded([3, 11, 7], seed=2)
    steps = torch.from_numpy(token_ids((3, 5), seed=3))
    logits = {}
    with torch.no_grad():
        for attention, model in models().items():
            past = KVCache(3, ids.shape[1] + steps.shape[1]) if cache == "preallocated" else None
            hidden, past = model(ids, past=past, left_pad=left_pad)
            out = [model.logits(hidden)]  # pad rows too: a pad query sees itself in both paths
            for t in range(steps.shape[1]):
                hidden, past = model(steps[:, t:t + 1], past=past, left_pad=left_pad)
                out.append(model.logits(hidden))
            logits[attention] = torch.cat(out, dim=1)
    assert torch.isfinite(logits["sdpa"]).all()
    assert relative(logits["sdpa"], logits["reference"]) <= RELATIVE


@pytest.mark.parametrize("attention", ["sdpa", "reference"])
def test_kv_cache_written_in_place_gives_the_bits_of_the_concatenating_cache(attention):
    """Prompt, then steps that reorder the rows as beam search does: grow (1 -> 3 rows per example), permute,
    shrink (an example leaves), identity."""
    model = models()[attention].eval()
    ids, left_pad = left_padded([4, 9], seed=4)
    orders = [[0, 0, 0, 1, 1, 1], [2, 0, 1, 5, 5, 3], [3, 4, 5], [0, 1, 2], [2, 2, 0]]
    cache = KVCache(6, ids.shape[1] + len(orders))
    with torch.no_grad():
        hidden, past = model(ids, left_pad=left_pad)
        written, cache = model(ids, past=cache, left_pad=left_pad)
        assert torch.equal(written, hidden)
        pad = left_pad
        for step, order in enumerate(orders):
            parents = torch.tensor(order)
            past, pad = [(k[parents], v[parents]) for k, v in past], pad[parents]
            cache.reorder(parents)
            tokens = torch.from_numpy(token_ids((len(order), 1), seed=10 + step))
            hidden, past = model(tokens, past=past, left_pad=pad)
            written, cache = model(tokens, past=cache, left_pad=pad)
            assert torch.equal(written, hidden), step
            assert cache.rows == len(order) and cache.length == ids.shape[1] + step + 1
            for layer, (k, v) in enumerate(past):
                assert torch.equal(cache.k[layer][:cache.rows, :, :cache.length], k)
                assert torch.equal(cache.v[layer][:cache.rows, :, :cache.length], v)
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
    """Mixed prompt lengths (left padding when batched), examples finishing and leaving the batch early."""
    settings = BeamSettings(beam=beam, eval_len=16, length_penalty=0.8, no_repeat_ngram_size=3,
                            repetition_penalty=1.3, eos_ids=SETTINGS[0].eos_ids)
    prompts = random_prompts(n=14)
    predictions = {cache: decode_with(lambda m, b, s: beam_search(m, b, s, cache=cache), eos_prone_model, prompts,
                                      settings, batch_size) for cache in ("preallocated", "concat")}
    assert predictions["preallocated"] == predictions["concat"]
    assert min(len(p) for p in predictions["concat"]) < settings.eval_len  # some ended early


# ---------------------------------------------------------------- AdamW

SHAPES = [(64, 4), (4, 192), (192,), (300, 64), (1,), (7, 13, 3), (200, 300)]  # (200, 300): threaded chunks


def adamw_runs(weight_decay, correct_bias, steps=12):
    """The loop and foreach AdamW from the same start, fed the same gradients (magnitudes 1e-3 to 1e1) and
    learning rates; yields the two parameter / state lists after each step."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    runs = []
    for foreach in (False, True):
        params = [(f"p{i}", torch.nn.Parameter(torch.from_numpy(p.copy()))) for i, p in enumerate(start)]
        runs.append((dict(params), AdamW(params, betas=(0.9, 0.98), eps=1e-6, weight_decay=weight_decay,
                                         correct_bias=correct_bias, foreach=foreach)))
    for step in range(steps):
        grads = [rng.normal(size=s).astype(np.float32) * np.float32(10.0 ** (step % 5 - 3)) for s in SHAPES]
        lr = 2e-4 * (1 + step % 3)
        for params, optimizer in runs:
            for p, g in zip(params.values(), grads):
                p.grad = torch.from_numpy(g.copy())
            optimizer.step(lr)
        yield [[*params.values(), *optimizer.exp_avg.values(), *optimizer.exp_avg_sq.values()]
               for params, optimizer in runs]


@pytest.mark.parametrize("correct_bias", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_foreach_adamw_is_bit_identical_to_the_loop(weight_decay, correct_bias):
    for step, (loop, foreach) in enumerate(adamw_runs(weight_decay, correct_bias)):
        assert all(torch.equal(a, b) for a, b in zip(loop, foreach)), step
    assert not torch.equal(loop[0], torch.zeros_like(loop[0]))


def test_foreach_adamw_resumes_from_the_loops_state():
    """The state arrays do not depend on the path: a foreach optimizer continues a loop one bit for bit."""
    rng = np.random.default_rng(1)
    start = rng.normal(size=(5, 3)).astype(np.float32)
    grads = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(4)]
    runs = []
    for switch in (False, True):
        p = torch.nn.Parameter(torch.from_numpy(start.copy()))
        optimizer = AdamW([("p", p)], weight_decay=0.01, foreach=False)
        for i, g in enumerate(grads):
            if switch and i == 2:
                state = optimizer.state_arrays()
                optimizer = AdamW([("p", p)], weight_decay=0.01, foreach=True)
                optimizer.load_state_arrays(state)
            p.grad = torch.from_numpy(g.copy())
            optimizer.step(1e-2)
        runs.append(p.detach().clone())
    assert torch.equal(runs[0], runs[1])
