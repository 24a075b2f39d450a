"""TER (pyter's algorithm, vectorised) against hand-checked cases and pyter itself (what GenerationEval calls)."""
import random

import pyter
import pytest

from lora_nlg.metrics.generation import corpus_ter
from lora_nlg.metrics.ter import ter


def test_hand_checked_cases():
    assert ter("a b c d".split(), "a b c d".split()) == 0.0
    assert ter([], "a b".split()) == 1.0
    assert ter("a x c".split(), "a b c".split()) == pytest.approx(1 / 3)  # one substitution
    assert ter("b c a".split(), "a b c".split()) == pytest.approx(1 / 3)  # one shift of 'a'


def test_pyter_docstring_example():
    reference = "SAUDI ARABIA denied THIS WEEK information published in the AMERICAN new york times".split()
    hypothesis = "THIS WEEK THE SAUDIS denied information published in the new york times".split()
    assert f"{ter(hypothesis, reference):.3f}" == "0.308"


def test_empty_reference_raises_like_pyter():
    with pytest.raises(ZeroDivisionError):
        ter(["a"], [])


def test_matches_pyter_on_random_inputs():
    rng = random.Random(0)
    for _ in range(400):
        hypothesis = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        reference = [rng.choice("abcd") for _ in range(rng.randint(1, 9))]
        assert ter(hypothesis, reference) == pyter.ter(hypothesis, reference), (hypothesis, reference)


def test_corpus_ter_takes_the_best_reference_and_scores_empty_ones_as_one():
    references = [["a b c", "a x c"], ["", ""]]
    assert corpus_ter(references, ["a x c", "anything"]) == pytest.approx((0.0 + 1) / 2)
