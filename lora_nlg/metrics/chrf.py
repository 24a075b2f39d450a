"""chrF++ as GenerationEval's `metrics/chrF.py` (Maja Popović's chrF, c6+w2, beta 2) computes it.

Differences from sacreBLEU's chrF++ that change the number, all kept:
- words: whitespace split, then ONE leading or trailing ASCII punctuation mark split off a word;
  characters: the stripped line without its spaces (tabs and other whitespace stay);
- per instance, the reference with the best sentence F (first one on ties) gives the n-gram counts
  that are summed over the corpus; an n-gram order the reference is too short for contributes
  nothing, not even the hypothesis' n-gram count;
- corpus F: per order, F_beta of the summed counts (1e-16 for an undefined precision, recall or F),
  averaged over the 6 + 2 orders.
"""
import string
from collections import Counter

CHAR_ORDER, WORD_ORDER, BETA = 6, 2, 2.0
TINY = 1e-16  # the original's value for an undefined precision, recall or F


def _words(line):
    words = []
    for word in line.strip().split():
        if len(word) > 1 and word[-1] in string.punctuation:
            words += [word[:-1], word[-1]]
        elif len(word) > 1 and word[0] in string.punctuation:
            words += [word[0], word[1:]]
        else:
            words.append(word)
    return words


def _chars(line):
    return list(line.strip().replace(" ", ""))


def _ngram_counts(units, max_order):
    """One Counter per order that has at least one n-gram (shorter inputs have fewer orders)."""
    return [Counter(tuple(units[i:i + n]) for i in range(len(units) - n + 1))
            for n in range(1, min(max_order, len(units)) + 1)]


def _pair_counts(reference, hypothesis):
    """Per order the reference has: (matches, reference total, hypothesis total)."""
    return [(sum(min(count, hyp[gram]) for gram, count in ref.items()), sum(ref.values()),
             sum(hyp.values())) for ref, hyp in zip(reference, hypothesis + [Counter()] * len(reference))]


def _f_score(matches, reference_total, hypothesis_total):
    precision = matches / hypothesis_total if hypothesis_total > 0 else TINY
    recall = matches / reference_total if reference_total > 0 else TINY
    denominator = BETA ** 2 * precision + recall
    return (1 + BETA ** 2) * precision * recall / denominator if denominator > 0 else TINY


def _sentence_f(counts):
    """Orders without a match are left out of the sum (the original only scores orders it matched)."""
    return sum(_f_score(m, r, h) for m, r, h in counts if m)


def chrf_plus_plus(references, hypotheses):
    """Corpus chrF++ (0-1). references: one list of non-empty reference strings per hypothesis."""
    totals = [[0, 0, 0] for _ in range(CHAR_ORDER + WORD_ORDER)]
    for group, hypothesis in zip(references, hypotheses):
        hyp_chars = _ngram_counts(_chars(hypothesis), CHAR_ORDER)
        hyp_words = _ngram_counts(_words(hypothesis), WORD_ORDER)
        best, best_f = None, -1.0
        for reference in group:
            chars = _pair_counts(_ngram_counts(_chars(reference), CHAR_ORDER), hyp_chars)
            words = _pair_counts(_ngram_counts(_words(reference), WORD_ORDER), hyp_words)
            f = (_sentence_f(chars) + _sentence_f(words)) / (CHAR_ORDER + WORD_ORDER)
            if f > best_f:
                best, best_f = (chars, words), f
        chars, words = best
        padded = chars + [(0, 0, 0)] * (CHAR_ORDER - len(chars)) + words + [(0, 0, 0)] * (WORD_ORDER - len(words))
        for total, counts in zip(totals, padded):
            for index, value in enumerate(counts):
                total[index] += value
    char_f = sum(_f_score(m, r, h) for m, r, h in totals[:CHAR_ORDER])
    word_f = sum(_f_score(m, r, h) for m, r, h in totals[CHAR_ORDER:])
    return (char_f + word_f) / (CHAR_ORDER + WORD_ORDER)
