"""GenerationEval's BLEU (multi-bleu-detok) on inputs small enough to check by hand."""
import math

from lora_nlg.metrics import multi_bleu


def test_exact_match_is_100():
    assert multi_bleu.bleu([["The cat sat on the mat."]], ["The cat sat on the mat."]) == 100.0


def test_case_sensitive():
    # 'the' vs 'The': 5 of 6 unigrams, 4 of 5 bigrams, 3 of 4 trigrams, 2 of 3 4-grams
    expected = 100 * math.exp((math.log(5 / 6) + math.log(4 / 5) + math.log(3 / 4) + math.log(2 / 3)) / 4)
    assert multi_bleu.bleu([["The cat sat on the mat"]], ["the cat sat on the mat"]) == round(expected, 2)


def test_brevity_penalty():
    # the first 4 of 6 reference words: precisions 1, BP exp(1 - 6/4)
    assert multi_bleu.bleu([["a b c d e f"]], ["a b c d"]) == round(100 * math.exp(1 - 6 / 4), 2)


def test_no_4gram_match_gives_zero():
    assert multi_bleu.bleu([["a b c d"]], ["a b c x"]) == 0.0


def test_empty_hypotheses_score_zero():
    assert multi_bleu.bleu([["a b c d"], ["e f g h"]], ["", ""]) == 0.0


def test_closest_reference_ties_go_to_the_shorter():
    correct, total, hyp_len, ref_len = multi_bleu.corpus_stats([["a b c", "a b c d e"]], ["a b c d"])
    assert (hyp_len, ref_len) == (4, 3)
    assert (correct, total) == ([4, 3, 2, 1], [4, 3, 2, 1])


def test_whitespace_is_perls():
    # U+00A0 separates words for Perl's \s, U+001C does not (Python's \s would split both)
    assert multi_bleu.tokenize("a\u00a0b") == ["a", "b"]
    assert multi_bleu.tokenize("a\x1cb") == ["a\x1cb"]


def test_unicode_and_numbers():
    assert multi_bleu.tokenize("Zürich, 3.5 km-long road.") == ["Zürich", ",", "3.5", "km-long", "road", "."]
