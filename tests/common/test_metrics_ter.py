"""TER (pyter's algorithm, vectorised) against hand-checked cases and a plain-Python statement of it."""
import random

import pytest

from lora_nlg.metrics.generation import corpus_ter
from lora_nlg.metrics.ter import ter


def plain_edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def plain_ter(hypothesis, reference):
    """pyter 0.3 written out directly: greedy best shift, ties to the largest word list."""
    shifts = 0
    while True:
        base = plain_edit_distance(hypothesis, reference)
        options = []
        for i in range(len(hypothesis)):
            for j in range(len(reference)):
                if i == j or hypothesis[i] != reference[j]:
                    continue
                length = 1
                while i + length < len(hypothesis) and j + length < len(reference) \
                        and hypothesis[i + length] == reference[j + length]:
                    length += 1
                moved = hypothesis[:i] + hypothesis[i + length:]
                moved[j:j] = hypothesis[i:i + length]
                options.append((base - plain_edit_distance(moved, reference), moved))
        if not options or max(options)[0] <= 0:
            return (shifts + base) / len(reference)
        hypothesis = max(options)[1]
        shifts += 1


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


def test_matches_the_plain_statement_on_random_inputs():
    rng = random.Random(0)
    for _ in range(400):
        hypothesis = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        reference = [rng.choice("abcd") for _ in range(rng.randint(1, 9))]
        assert ter(hypothesis, reference) == plain_ter(hypothesis, reference), (hypothesis, reference)


def test_corpus_ter_takes_the_best_reference_and_scores_empty_ones_as_one():
    references = [["a b c", "a x c"], ["", ""]]
    assert corpus_ter(references, ["a x c", "anything"]) == pytest.approx((0.0 + 1) / 2)
