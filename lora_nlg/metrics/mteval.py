"""BLEU and NIST as e2e-metrics' Python port of MT-Eval v13a (`measure_scores.py -p`) computes them.

The official E2E numbers depend on details a textbook BLEU/NIST does not have, all kept here:
- v13a tokenisation (punctuation split off, '.' and ',' kept inside numbers); n-grams lower-cased;
- an empty hypothesis is one empty token, and a hypothesis shorter than n adds a NEGATIVE amount
  (len - n + 1) to the n-gram total;
- BLEU: counts clipped by the largest count in any one reference, brevity penalty against the
  reference closest in length (ties: the shorter), precisions floored at 1e-15 so it is always defined;
- NIST: information weights from n-gram counts summed over all references of all segments, length
  penalty against the sum over segments of the mean reference length.
"""
import math
import re
from collections import Counter

_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
_SPACED_OUT = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period / comma not preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period / comma not followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
)
_WHITESPACE = re.compile(r"\s+")
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2  # length penalty 0.5 at 2/3 of the reference length


def space_out_13a(text):
    """mteval-v13a's tokenization() up to (not including) its whitespace clean-up, which differs by caller."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    text = f" {text} "
    for pattern, replacement in _SPACED_OUT:
        text = pattern.sub(replacement, text)
    return text


def tokenize_13a(text):
    """Tokens as the Python port splits them: an empty text gives [''] (one empty token)."""
    return _WHITESPACE.sub(" ", space_out_13a(text)).strip().split(" ")


def _ngram_counts(tokens, n):
    lowered = [token.lower() for token in tokens]
    return Counter(tuple(lowered[i:i + n]) for i in range(len(lowered) - n + 1))


def _max_reference_counts(references, n):
    merged = Counter()
    for reference in references:
        merged |= _ngram_counts(reference, n)  # `|` keeps the larger count
    return merged


def _tokenized(references, hypotheses):
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    return ([[tokenize_13a(r) for r in group] for group in references],
            [tokenize_13a(h) for h in hypotheses])


def bleu(references, hypotheses, max_n=4):
    """Corpus BLEU (0-1). references: one list of reference strings per hypothesis."""
    references, hypotheses = _tokenized(references, hypotheses)
    hits, totals, reference_length = [0] * max_n, [0] * max_n, 0
    for group, hypothesis in zip(references, hypotheses):
        for n in range(1, max_n + 1):
            allowed = _max_reference_counts(group, n)
            hits[n - 1] += sum(min(count, allowed[gram]) for gram, count in _ngram_counts(hypothesis, n).items())
            totals[n - 1] += len(hypothesis) - n + 1
        reference_length += len(min(group, key=lambda r: (abs(len(r) - len(hypothesis)), len(r))))
    brevity = 1.0
    if totals[0] <= reference_length:
        brevity = math.exp(1.0 - reference_length / (float(totals[0]) if totals[0] else 1e-5))
    log_precision = sum(math.log(max(h, 1e-15) / max(t, 1e-9)) for h, t in zip(hits, totals))
    return brevity * math.exp(log_precision / max_n)


def nist(references, hypotheses, max_n=5):
    """Corpus NIST. references: one list of reference strings per hypothesis."""
    references, hypotheses = _tokenized(references, hypotheses)
    reference_counts = [Counter() for _ in range(max_n + 1)]  # index 0: the 0-gram () = all reference words
    segment_hits = [[] for _ in range(max_n)]
    totals = [0] * max_n
    mean_reference_length = 0.0
    for group, hypothesis in zip(references, hypotheses):
        for n in range(1, max_n + 1):
            totals[n - 1] += len(hypothesis) - n + 1
            allowed = _max_reference_counts(group, n)
            clipped = {gram: min(count, allowed[gram]) for gram, count in _ngram_counts(hypothesis, n).items()}
            segment_hits[n - 1].append({gram: hits for gram, hits in clipped.items() if hits})
            for reference in group:
                reference_counts[n].update(_ngram_counts(reference, n))
        words = sum(len(reference) for reference in group)
        reference_counts[0][()] += words
        mean_reference_length += words / float(len(group))

    def information(gram):
        return math.log(reference_counts[len(gram) - 1][gram[:-1]] / float(reference_counts[len(gram)][gram]), 2)

    score = 0.0
    for n in range(max_n):
        gained = 0.0
        for hits in segment_hits[n]:
            gained += sum(information(gram) * count for gram, count in hits.items())
        score += gained / (totals[n] or 1)  # a zero total crashes the original; 1 as in later forks
    return _nist_length_penalty(totals[0], mean_reference_length) * score


def _nist_length_penalty(system_length, mean_reference_length):
    ratio = system_length / float(mean_reference_length)
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-NIST_BETA * math.log(ratio) ** 2)
