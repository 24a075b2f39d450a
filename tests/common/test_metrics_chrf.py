"""GenerationEval's chrF++ on inputs small enough to check by hand."""
import pytest

from lora_nlg.metrics import chrf


def f_beta(precision, recall, beta=2.0):
    return (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall)


def test_exact_match_is_one():
    assert chrf.chrf_plus_plus([["The cat sat."]], ["The cat sat."]) == pytest.approx(1.0)


def test_words_split_one_outer_punctuation_mark():
    assert chrf._words(" Hello, world! (x) a ") == ["Hello", ",", "world", "!", "(x", ")", "a"]
    assert chrf._chars(" a b\tc ") == ["a", "b", "\t", "c"]


def test_orders_the_reference_is_too_short_for_count_nothing():
    # chars: ref 'ab' has orders 1-2 only, so the hypothesis trigram 'abc' is not counted;
    # words: 'abc' vs 'ab' share nothing; undefined precision / recall / F count as 1e-16.
    tiny = 1e-16
    expected = (f_beta(2 / 3, 1) + f_beta(1 / 2, 1) + 4 * f_beta(tiny, tiny) + tiny + tiny) / 8
    assert chrf.chrf_plus_plus([["ab"]], ["abc"]) == pytest.approx(expected, rel=1e-12)


def test_best_reference_per_sentence_gives_the_counts():
    # the second reference matches exactly, so the corpus counts are those of an exact match
    assert chrf.chrf_plus_plus([["zzz qqq", "a long cat"]], ["a long cat"]) == pytest.approx(1.0)


def test_a_text_shorter_than_six_characters_cannot_score_one():
    # 'a cat' has 4 characters without spaces: orders 5 and 6 are undefined (1e-16) even for an exact match
    assert chrf.chrf_plus_plus([["a cat"]], ["a cat"]) == pytest.approx(6 / 8)


def test_unicode_characters():
    assert chrf.chrf_plus_plus([["Zürich café"]], ["Zürich café"]) == pytest.approx(1.0)
    assert chrf.chrf_plus_plus([["Zürich"]], ["Zurich"]) < 1.0
