"""Stratified sampling of INPUTS: a fraction of each stratum's inputs, with all their references.

Sampling lines (what the prior reproduction did) splits an input's references between kept and dropped
ones, so a sampled test set has ~1.85 references per input instead of E2E's ~7.4 and multi-reference
metrics change meaning. Here an input (the context text: an E2E meaning representation, a WebNLG /
DART triple set; the same key decode groups references by) is kept or dropped with all its lines.
SQuAD samples whole ARTICLES instead (key: the title; one stratum), so the questions of a kept
article keep all their sibling questions on the same paragraphs and no paragraph is split between
train and validation.

Each stratum keeps round(fraction * n_inputs) inputs, at least one, chosen by a numpy Generator
seeded from the user seed and a sha256 of "dataset/split/stratum" (Python's hash() is salted per
process), so a sample is reproducible and one stratum's draw does not depend on the others.
Kept lines stay in their original file order.
"""
import hashlib
from collections import Counter
from typing import NamedTuple

import numpy as np

NO_TYPE = "no type"  # E2E meaning representations without a Type field
OTHER = "other"  # DART first predicates too rare to be a stratum of their own
DART_MIN_SHARE = 0.005
ARTICLE = "article"  # SQuAD's one stratum


class Input(NamedTuple):
    key: str  # what identifies the input: its context text, or a SQuAD article's title
    stratum: str
    lines: list  # indices of its records (references), in file order


class StratumCount(NamedTuple):
    inputs: int
    references: int
    inputs_full: int
    references_full: int


def e2e_stratum(record):
    """The value of the meaning representation's `Type` field (eatType), or 'no type'."""
    for field in record["context"].split(" | "):
        key, _, value = field.partition(" : ")
        if key == "Type":
            return value
    return NO_TYPE


def webnlg_stratum(record):
    return record["category"]


def squad_stratum(record):
    return ARTICLE


def squad_article(record):
    """The sampling unit of SQuAD: the article (its title), with all its paragraphs and questions."""
    return record["title"]


def context_text(record):
    return record["context"]


def first_predicate(record):
    """The (already lower-cased) predicate of the first triple of a DART context."""
    return record["context"].split(" | ", 1)[0].split(" : ")[1]


def dart_stratum_function(records_by_split, min_share=DART_MIN_SHARE):
    """DART strata: first predicates of at least `min_share` of all inputs (all splits); the rest 'other'."""
    counts = Counter(item.stratum for records in records_by_split.values()
                     for item in group_inputs(records, first_predicate))
    total = sum(counts.values())
    common = {predicate for predicate, n in counts.items() if n >= min_share * total}
    return lambda record: first_predicate(record) if first_predicate(record) in common else OTHER


def group_inputs(records, stratum_of, key_of=context_text):
    """Inputs (records sharing `key_of`) in order of first appearance; an input's stratum is that of
    its first record."""
    by_key = {}
    for index, record in enumerate(records):
        key = key_of(record)
        found = by_key.get(key)
        if found is None:
            by_key[key] = Input(key, stratum_of(record), [index])
        else:
            found.lines.append(index)
    return list(by_key.values())


def stable_seed(seed, *parts):
    """[seed, 64-bit sha256 of the parts]: a numpy seed that is the same in every process."""
    digest = hashlib.sha256("/".join(parts).encode("utf-8")).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def sample_inputs(records, stratum_of, fraction, seed, name, key_of=context_text):
    """Kept line indices (sorted) and {stratum: StratumCount} for one split `name` ("dataset/split")."""
    strata = {}
    for item in group_inputs(records, stratum_of, key_of):
        strata.setdefault(item.stratum, []).append(item)
    kept_lines, counts = [], {}
    for stratum, inputs in strata.items():
        keep = max(1, round(fraction * len(inputs)))
        if keep < len(inputs):
            rng = np.random.default_rng(stable_seed(seed, name, stratum))
            inputs = [inputs[i] for i in sorted(rng.choice(len(inputs), size=keep, replace=False))]
        kept_lines.extend(line for item in inputs for line in item.lines)
        counts[stratum] = StratumCount(len(inputs), sum(len(item.lines) for item in inputs),
                                       len(strata[stratum]), sum(len(item.lines) for item in strata[stratum]))
    return sorted(kept_lines), counts


def hold_out_articles(records, fraction, seed, name):
    """(kept, held out): `fraction` of the SQuAD articles of `records` (at least one), chosen like a
    sample, go to the held-out list with all their questions; both lists stay in file order."""
    held = set(sample_inputs(records, squad_stratum, fraction, seed, name, squad_article)[0])
    return ([record for i, record in enumerate(records) if i not in held],
            [record for i, record in enumerate(records) if i in held])


def evenly_spaced(items, count):
    """`count` items spread evenly over the list (all of them if it is shorter): a small, stable valid set."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]
