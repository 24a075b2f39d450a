"""Jittor's batched beam search (gpt2_beam.beam_search + lora_nlg.decode.beam) against the reference's rules.

The cases are the PyTorch tests' (tests/alignment/beam_cases.py): a random small GPT-2 whose EOS ids
are likely is decoded batched, one input at a time, and by the plain reference search in
alignment.beam_reference fed with this model's logits. The rules themselves (bans, penalties, length
penalty, stopping) are lora_nlg's and are checked on hand-made models in tests/NLG_pytorch/test_beam.py.
"""
import numpy as np
import pytest

import gpt2_beam
from alignment.beam_cases import EOS_IDS, SETTINGS, CountingModel, decode_with, eos_prone_weights, random_prompts
from alignment.beam_reference import reference_beam_search
from alignment.fixtures import SMALL
from jittor_env import jt
from lora_nlg.util.errors import NLGError
from model import GPT2LMModel


@pytest.fixture(scope="module")
def small_model():
    model = GPT2LMModel(SMALL).eval()
    model.load_weights(eos_prone_weights())
    return model


@pytest.fixture(scope="module")
def prompts():
    return random_prompts()


def decode(model, prompts, settings, batch_size):
    return decode_with(gpt2_beam.beam_search, model, prompts, settings, batch_size)


def full_forward_logits(model):
    """next_logits for the reference search: the whole sequence again, no cache."""
    def next_logits(sequences):
        with jt.no_grad():
            hidden, _ = model(jt.array(np.array(sequences, dtype=np.int64)))
            return model.logits(hidden[:, -1]).numpy()
    return next_logits


@pytest.mark.parametrize("settings", SETTINGS)
def test_batched_search_equals_the_plain_reference(small_model, prompts, settings):
    batched = decode(small_model, prompts, settings, batch_size=7)
    expected = [reference_beam_search(full_forward_logits(small_model), p, settings) for p in prompts]
    assert batched == expected
    assert min(len(tokens) for tokens in batched) < settings.eval_len  # results that ended early
    assert all(t[-1] in EOS_IDS or len(t) == settings.eval_len for t in batched)


def test_batched_equals_one_at_a_time_and_stops_early(small_model, prompts):
    settings = SETTINGS[0]
    counting = CountingModel(small_model)
    one_by_one = decode(counting, prompts, settings, batch_size=1)
    assert decode(small_model, prompts, settings, batch_size=9) == one_by_one
    assert len({len(p) for p in prompts[:9]}) > 3  # one batch mixes many prompt lengths
    assert counting.calls < len(prompts) * settings.eval_len * 0.9  # the early stop skipped steps


@pytest.mark.parametrize("rows, n, k", [(3, 3000, 10), (2, 512, 4), (4, 100, 10), (1, 50257, 1), (5, 700, 7)])
def test_top_candidates_are_the_largest_entries_in_order(rows, n, k):
    """Groups of 256 with a ragged last one (3000, 700, 50257), exact groups (512), a single short group (100)."""
    rng = np.random.default_rng(n)
    values = rng.normal(size=(rows, n)).astype(np.float32)
    values[0, rng.choice(n, n // 2, replace=False)] = -np.inf  # banned tokens, finished hypotheses
    got_values, got_indices = gpt2_beam.top_candidates(jt.array(values), k)
    expected = -np.sort(-values, axis=1)[:, :k]
    assert got_values.shape == got_indices.shape == (rows, k)
    assert np.array_equal(got_values, expected)
    assert np.array_equal(np.take_along_axis(values, got_indices.astype(np.int64), axis=1), expected)
    assert all(len(set(row)) == k for row in got_indices.tolist())


def test_top_candidates_with_fewer_finite_entries_than_k_never_pick_the_padding():
    values = np.full((2, 300), -np.inf, np.float32)
    values[:, [3, 250]] = [[1.0, 2.0], [0.5, -1.0]]
    got_values, got_indices = gpt2_beam.top_candidates(jt.array(values), 5)
    assert got_values[:, :2].tolist() == [[2.0, 1.0], [0.5, -1.0]] and np.isinf(got_values[:, 2:]).all()
    assert got_indices[:, :2].tolist() == [[250, 3], [3, 250]] and (got_indices < 300).all()


def test_device_flag_takes_cuda_only_where_jittor_has_it():
    use_cuda = jt.flags.use_cuda
    try:
        if use_cuda:
            assert gpt2_beam.pick_device("cuda") == "cuda"
        else:
            with pytest.raises(NLGError, match="--device cuda:1: Jittor sees no CUDA device"):
                gpt2_beam.pick_device("cuda:1")
        assert gpt2_beam.pick_device("cpu") == "cpu" and not jt.flags.use_cuda
    finally:
        jt.flags.use_cuda = use_cuda
