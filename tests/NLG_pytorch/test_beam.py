"""Batched beam search (gpt2_beam.beam_search + lora_nlg.decode.beam) against the reference's rules.

A random small GPT-2 whose EOS ids are made likely (so hypotheses finish, and the early stop and
the result bookkeeping are exercised) is decoded batched, one input at a time, and by the plain
reference search in alignment.beam_reference; hand-made bigram models check each rule on its own.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from alignment.beam_cases import (
    EOS_IDS,
    SEQ_LEN,
    SETTINGS,
    CountingModel,
    decode_with,
    eos_prone_weights,
    random_prompts,
)
from alignment.beam_reference import log_softmax, reference_beam_search
from alignment.fixtures import SMALL
from gpt2_beam import beam_search
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.decode.beam import BeamBook, BeamError, BeamSettings, length_denominators
from model import GPT2LMModel

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_model():
    """Random SMALL GPT-2; ln_f's bias raises both EOS logits by ~3, so about half the hypotheses end early."""
    model = GPT2LMModel(SMALL).eval()
    model.load_weights(eos_prone_weights())
    return model


@pytest.fixture(scope="module")
def prompts():
    return random_prompts()


def decode(model, prompts, settings, batch_size, seq_len=SEQ_LEN):
    return decode_with(beam_search, model, prompts, settings, batch_size, seq_len)


def full_forward_logits(model):
    """next_logits for the reference search: the whole sequence again, no cache."""
    def next_logits(sequences):
        with torch.no_grad():
            hidden, _ = model(torch.tensor(sequences))
            return model.logits(hidden[:, -1]).numpy()
    return next_logits


@pytest.mark.parametrize("settings", SETTINGS)
def test_batched_search_equals_the_plain_reference(small_model, prompts, settings):
    batched = decode(small_model, prompts, settings, batch_size=7)
    expected = [reference_beam_search(full_forward_logits(small_model), p, settings) for p in prompts]
    assert batched == expected
    lengths = [len(tokens) for tokens in batched]
    assert min(lengths) < settings.eval_len and any(t[-1] in EOS_IDS for t in batched)  # results that ended early
    assert all(t[-1] in EOS_IDS or len(t) == settings.eval_len for t in batched)


def test_batched_equals_one_at_a_time_and_stops_early(small_model, prompts):
    settings = SETTINGS[0]
    counting = CountingModel(small_model)
    one_by_one = decode(counting, prompts, settings, batch_size=1)
    assert decode(small_model, prompts, settings, batch_size=9) == one_by_one
    assert len({len(p) for p in prompts[:9]}) > 3  # one batch mixes many prompt lengths
    assert counting.calls < len(prompts) * settings.eval_len * 0.9  # the early stop skipped steps


def test_prompt_is_left_truncated_to_seq_len_minus_eval_len(small_model, prompts):
    settings = BeamSettings(beam=3, eval_len=8, eos_ids=EOS_IDS)
    long_prompt = prompts[0] + prompts[1] + prompts[2]
    assert len(long_prompt) > 20
    assert decode(small_model, [long_prompt], settings, 1, seq_len=20) == \
        decode(small_model, [long_prompt[-12:]], settings, 1, seq_len=20)


def test_beam_one_is_greedy_argmax_decoding(small_model, prompts):
    settings = BeamSettings(beam=1, eval_len=12, no_repeat_ngram_size=0, eos_ids=EOS_IDS)
    next_logits = full_forward_logits(small_model)
    expected = []
    for prompt in prompts:
        tokens = []
        while len(tokens) < settings.eval_len and (not tokens or tokens[-1] not in EOS_IDS):
            tokens.append(int(next_logits([prompt + tokens])[0].argmax()))
        expected.append(tokens)
    assert decode(small_model, prompts, settings, batch_size=8) == expected
    assert any(len(t) < settings.eval_len for t in expected)


# ---------------------------------------------------------------- hand-made bigram models

VOCAB = 8
EOS = 7


class BigramModel:
    """Next-token logits = table[last token]; the GPT2LMModel interface beam_search uses."""

    def __init__(self, rows):
        self.table = torch.full((VOCAB, VOCAB), -20.0)
        for token, logits in rows.items():
            for nxt, value in logits.items():
                self.table[token, nxt] = value
        self.config = SimpleNamespace(vocab_size=VOCAB)
        self.wte = SimpleNamespace(weight=self.table)
        self.calls = 0

    def __call__(self, tokens, past=None, left_pad=None):
        self.calls += 1
        return torch.nn.functional.one_hot(tokens, VOCAB).float(), [(tokens, tokens)]

    def logits(self, hidden):
        return hidden @ self.table


def run(model, prompt, **settings):
    settings = BeamSettings(**{"beam": 1, "eval_len": 8, "no_repeat_ngram_size": 0, "eos_ids": (EOS,), **settings})
    return decode(model, [prompt], settings, batch_size=1, seq_len=32)[0]


CYCLE = BigramModel({1: {2: 5.0, 3: 4.0}, 2: {1: 5.0, 3: 4.0}, 3: {EOS: 5.0}})


@pytest.mark.parametrize("n, expected", [
    (0, [2, 1, 2, 1, 2, 1, 2, 1]),  # 1 -> 2 -> 1 -> ... forever
    (2, [2, 1, 2, 3, EOS]),  # (2, 1) already generated: 1 is banned after 2; the prompt's (1, 2) does not count
    (3, [2, 1, 2, 1, 3, EOS]),  # (2, 1, 2) already generated: 2 is banned after (2, 1)
    (1, [2, 1, 3, EOS]),  # no token twice
])
def test_no_repeat_ngram_ban(n, expected):
    assert run(CYCLE, [1], no_repeat_ngram_size=n) == expected


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    positive = BigramModel({5: {5: 3.0, 6: 2.0}, 6: {EOS: 9.0}})
    assert run(positive, [5]) == [5] * 8
    assert run(positive, [5], repetition_penalty=2.0) == [5, 6, EOS]  # the prompt's 5 is not penalised
    negative = BigramModel({5: {5: -1.0, 6: -1.5}, 6: {EOS: 9.0}})
    assert run(negative, [5], repetition_penalty=2.0) == [5, 6, EOS]  # -1 * 2 < -1.5
    assert run(negative, [5], repetition_penalty=0.5) == [5] * 8


def test_min_length_bans_eos_before_it_and_several_eos_ids_end_hypotheses():
    model = BigramModel({3: {EOS: 5.0, 4: 3.0}, 4: {EOS: 5.0, 4: 3.0}, 1: {6: 5.0}, 6: {EOS: 5.0}})
    assert run(model, [3]) == [EOS]
    assert run(model, [3], min_length=2) == [4, 4, EOS]
    assert run(model, [1]) == [6, EOS]
    assert run(model, [1], eos_ids=(EOS, 6)) == [6]


def probs_row(probabilities):
    return {token: math.log(p) for token, p in probabilities.items()}


# from prompt [0]: A = [EOS] with log-prob log .35, B = [1, EOS] with log .6 + log .4; every other
# hypothesis is worse than both, with or without length penalty (other tokens' rows are uniform)
CHOICE = BigramModel({0: probs_row({EOS: 0.35, 1: 0.6, 2: 0.05}), 1: probs_row({EOS: 0.4, 3: 0.35, 2: 0.25})})


def test_length_penalty_divides_the_score_by_length_to_the_power():
    a = log_softmax(CHOICE.table[0].numpy())[EOS]
    b = log_softmax(CHOICE.table[0].numpy())[1] + log_softmax(CHOICE.table[1].numpy())[EOS]
    assert a > b and b / 2 > a  # hand-made so that the two penalties disagree
    assert run(CHOICE, [0], beam=2, eval_len=6, length_penalty=0.0) == [EOS]
    assert run(CHOICE, [0], beam=2, eval_len=6, length_penalty=1.0) == [1, EOS]


def test_search_stops_once_no_live_hypothesis_can_win():
    CHOICE.calls = 0
    assert run(CHOICE, [0], beam=2, eval_len=6, length_penalty=0.0) == [EOS]
    assert CHOICE.calls == 2  # after step 2 the only live hypothesis, [1, 3] (log .21), is below [EOS] (log .35)


def test_an_equal_score_does_not_replace_the_earlier_result():
    # [EOS] and, two steps later, [1, 2, EOS] score exactly the same (1 -> 2 -> EOS have probability 1
    # in float32); the better live [3, 4] keeps the search going until the second one is offered
    model = BigramModel({0: {3: 5.5, EOS: 5.0, 1: 5.0}, 1: {2: 5.0}, 2: {EOS: 5.0}, 3: {4: 5.0}})
    row = lambda t: log_softmax(model.table[t].numpy())  # noqa: E731
    assert row(0)[EOS] == row(0)[1] + row(1)[2] + row(2)[EOS]
    assert run(model, [0], beam=3, eval_len=5, length_penalty=0.0) == [EOS]


def test_unfinished_hypotheses_compete_at_eval_len():
    # the EOS ending is poor (log .02 per step) next to continuing (log .98): the full-length one wins
    model = BigramModel({2: probs_row({2: 0.49, 4: 0.49, EOS: 0.02}), 4: probs_row({2: 0.49, 4: 0.49, EOS: 0.02})})
    assert len(run(model, [2], beam=3, eval_len=5)) == 5


# ---------------------------------------------------------------- the numpy bookkeeping

def test_banned_pairs_on_a_hand_made_history():
    book = BeamBook(BeamSettings(beam=2, eval_len=10, no_repeat_ngram_size=2, min_length=5, eos_ids=(7, 6)), 1, 10)
    book.history = np.array([[[1, 2, 1, 3, 1], [4, 4, 4, 4, 4]]])
    book.scores = np.zeros((1, 2), np.float32)
    rows, tokens = book.banned_pairs()
    assert sorted(zip(rows.tolist(), tokens.tolist())) == [(0, 2), (0, 3), (1, 4), (1, 4), (1, 4), (1, 4)]
    book.history = book.history[:, :, :4]  # 4 < min_length: EOS ids banned too
    rows, tokens = book.banned_pairs()
    assert sorted(zip(rows.tolist(), tokens.tolist())) == [(0, 6), (0, 7), (1, 4), (1, 4), (1, 4), (1, 6), (1, 7)]
    rows, tokens = book.repeated_pairs()
    assert list(zip(rows.tolist(), tokens.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 4)]


def test_length_denominators_and_their_future_maximum():
    d, future = length_denominators(4, 0.5)
    assert np.allclose(d[1:], [1, 2 ** 0.5, 3 ** 0.5, 2]) and np.allclose(future[:4], [2, 2, 2, 2])
    d, future = length_denominators(4, -1.0)
    assert np.allclose(future[:4], [1, 1 / 2, 1 / 3, 1 / 4])  # negative penalty: the next length is the max


@pytest.mark.parametrize("values, problem", [
    ({"beam": 0}, "--beam 0: must be >= 1"),
    ({"eval_len": 0}, "--eval_len 0: must be >= 1"),
    ({"repetition_penalty": 0.0}, "--repetition_penalty 0.0: must be > 0"),
    ({"no_repeat_ngram_size": -1}, "--no_repeat_ngram_size -1: must be >= 0"),
])
def test_bad_settings_name_the_flag(values, problem):
    with pytest.raises(BeamError, match=problem):
        BeamSettings(**{"beam": 2, "eval_len": 4, **values})


def test_eos_outside_the_vocabulary_is_an_error():
    with pytest.raises(BeamError, match=f"--eos_token_id {EOS_ID}: not in the vocabulary of 300 tokens"):
        BeamBook(BeamSettings(beam=2, eval_len=4), 1, SMALL.vocab_size)
