"""E2E BLEU / NIST (the Python MT-Eval port) on inputs small enough to check by hand."""
import math

import pytest

from lora_nlg.metrics import mteval


def test_13a_tokenisation_splits_punctuation_but_not_numbers():
    assert mteval.tokenize_13a("It costs £20-25, (approx.) 3.5 stars.") == \
        ["It", "costs", "£20", "-", "25", ",", "(", "approx", ".", ")", "3.5", "stars", "."]
    assert mteval.tokenize_13a("a &amp; b &quot;c&quot;") == ["a", "&", "b", '"', "c", '"']


def test_empty_text_is_one_empty_token():
    assert mteval.tokenize_13a("") == [""]
    assert mteval.tokenize_13a("   ") == [""]


def test_exact_match_is_bleu_one_case_insensitive():
    assert mteval.bleu([["The cat sat on the mat ."]], ["the CAT sat on the mat ."]) == pytest.approx(1.0)


def test_brevity_penalty_against_closest_reference():
    # hypothesis = the first 4 of 6 reference words: all n-gram precisions are 1, BP = exp(1 - 6/4)
    score = mteval.bleu([["a b c d e f", "x y z w v u t s r q"]], ["a b c d"])
    assert score == pytest.approx(math.exp(1 - 6 / 4))


def test_closest_reference_ties_go_to_the_shorter():
    # lengths 3 and 5 are both 1 away from 4: the shorter (3) is the reference length, so no penalty
    assert mteval.bleu([["a b c", "a b c d e"]], ["a b c d"]) == pytest.approx((4 / 4 * 3 / 3 * 2 / 2 * 1 / 1) ** 0.25)


def test_clipping_by_the_largest_count_in_one_reference():
    # 'the' x4 in the hypothesis; at most 2 in one reference: unigram precision 2/4, bigram 1/3 ('the the')
    # no tri- or 4-gram matches: hits floored at 1e-15; hypothesis longer than the references: BP 1
    score = mteval.bleu([["the the cat", "the cat the"]], ["the the the the"])
    assert score == pytest.approx(math.exp((math.log(2 / 4) + math.log(1 / 3) + math.log(1e-15 / 2)
                                            + math.log(1e-15 / 1)) / 4))


def test_empty_hypothesis_gives_a_tiny_defined_bleu():
    score = mteval.bleu([["a b"]], [""])
    # hypothesis = one empty token: totals 1, 0, -1, -2 -> floored at 1e-9; hits floored at 1e-15; BP exp(1 - 2/1)
    expected = math.exp(1 - 2) * math.exp((math.log(1e-15 / 1) + 3 * math.log(1e-15 / 1e-9)) / 4)
    assert score == pytest.approx(expected)


def test_unicode_words_match():
    assert mteval.bleu([["Café Zürich serves crêpes"]], ["café zürich serves crêpes"]) == pytest.approx(1.0)


def test_nist_information_weights_by_hand():
    # reference "a b" (one segment), hypothesis "a b": unigram info log2(2/1) each, bigram info
    # log2(count(a)/count(a b)) = 0; n >= 3 has no n-grams; totals 2, 1, 0, -1, -2.
    assert mteval.nist([["a b"]], ["a b"]) == pytest.approx((1 + 1) / 2 + 0 / 1)


def test_nist_length_penalty():
    # one hypothesis word of a 3-word reference: ratio 1/3
    score = mteval.nist([["a b c"]], ["a"])
    info = math.log2(3 / 1)
    penalty = math.exp(-mteval.NIST_BETA * math.log(1 / 3) ** 2)
    assert score == pytest.approx(penalty * info / 1)


def test_mismatched_counts_are_refused():
    with pytest.raises(ValueError):
        mteval.bleu([["a"], ["b"]], ["a"])
