"""BLEU as Moses' `multi-bleu-detok.perl` computes it (GenerationEval's BLEU for WebNLG / DART).

Unlike the E2E port in `mteval`: case-sensitive, whitespace is Perl's `\\s` (Unicode, but not
U+001C..U+001F as Python's is), no smoothing (a zero precision makes BLEU 0), and the result is
printed with two decimals, which is the value GenerationEval reports. Each line ends at '\\n' and
loses only that: Moses' `chop` would also cut the last character of a file without a final newline,
but GenerationEval's printed value on the DART fixture (46.64) shows its copy does not.
"""
import math
import re
from collections import Counter

from lora_nlg.metrics.mteval import space_out_13a

_PERL_SPACE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


def tokenize(line):
    text = _PERL_SPACE.sub(" ", space_out_13a(line)).strip(" ")
    return text.split(" ") if text else []


def _ngram_counts(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_stats(references, hypotheses):
    """(correct[1..4], total[1..4], hypothesis length, closest reference length) over the corpus."""
    correct, total = [0] * 4, [0] * 4
    hypothesis_length = reference_length = 0
    for group, hypothesis in zip(references, hypotheses):
        words = tokenize(hypothesis)
        group = [tokenize(reference) for reference in group]
        hypothesis_length += len(words)
        reference_length += len(min(group, key=lambda r: (abs(len(r) - len(words)), len(r))))
        for n in range(1, 5):
            allowed = Counter()
            for reference in group:
                allowed |= _ngram_counts(reference, n)
            counts = _ngram_counts(words, n)
            total[n - 1] += sum(counts.values())
            correct[n - 1] += sum(min(count, allowed[gram]) for gram, count in counts.items())
    return correct, total, hypothesis_length, reference_length


def bleu(references, hypotheses):
    """BLEU (0-100, two decimals). references: one list of reference strings per hypothesis."""
    correct, total, hypothesis_length, reference_length = corpus_stats(references, hypotheses)
    if reference_length == 0 or hypothesis_length == 0:
        return 0.0  # the Perl script stops with an error here instead of printing a score
    precisions = [c / t if t else 0 for c, t in zip(correct, total)]
    brevity = 1.0
    if hypothesis_length < reference_length:
        brevity = math.exp(1 - reference_length / hypothesis_length)
    log_sum = sum(math.log(p) if p else -9999999999 for p in precisions)
    return float(f"{100 * brevity * math.exp(log_sum / 4):.2f}")
