"""Stratified sampling by input on synthetic records: whole inputs, per-stratum quotas, determinism."""
import subprocess
import sys
from collections import Counter

import pytest

from lora_nlg.data import sampling


def synthetic(n_inputs_by_stratum, refs=3):
    """Records of inputs 'stratum-i' with `refs` references each, interleaved across inputs."""
    inputs = [(s, f"{s} : input {i}") for s, n in n_inputs_by_stratum.items() for i in range(n)]
    return [{"context": context, "completion": f"ref {r}", "stratum": s} for r in range(refs) for s, context in inputs]


def by_stratum(record):
    return record["stratum"]


def test_whole_inputs_kept_in_file_order_with_round_fraction_per_stratum():
    records = synthetic({"a": 100, "b": 37, "c": 3, "d": 1})
    kept, counts = sampling.sample_inputs(records, by_stratum, 0.18, 110, "toy/train")
    assert kept == sorted(kept)
    contexts = Counter(records[i]["context"] for i in kept)
    assert set(contexts.values()) == {3}  # every kept input has all its references
    per_stratum = Counter(context.split(" : ")[0] for context in contexts)
    assert per_stratum == {"a": 18, "b": 7, "c": 1, "d": 1}  # round(18.0), round(6.66), round(0.54), at least 1
    assert counts["b"] == sampling.StratumCount(inputs=7, references=21, inputs_full=37, references_full=111)


def test_same_seed_same_sample_other_seed_or_split_other_sample():
    records = synthetic({"a": 200, "b": 50})
    first = sampling.sample_inputs(records, by_stratum, 0.2, 110, "toy/train")[0]
    assert sampling.sample_inputs(records, by_stratum, 0.2, 110, "toy/train")[0] == first
    assert sampling.sample_inputs(records, by_stratum, 0.2, 111, "toy/train")[0] != first
    assert sampling.sample_inputs(records, by_stratum, 0.2, 110, "toy/test")[0] != first


def test_one_stratum_draw_does_not_depend_on_the_others():
    alone = synthetic({"a": 200})
    together = synthetic({"a": 200, "b": 50})

    def pick(records):
        return {records[i]["context"] for i in sampling.sample_inputs(records, by_stratum, 0.1, 7, "toy/x")[0]}

    assert pick(alone) == {c for c in pick(together) if c.startswith("a")}


def test_stable_seed_is_the_same_in_another_process():
    code = "from lora_nlg.data.sampling import stable_seed; print(stable_seed(110, 'e2e/train', 'pub'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(sampling.stable_seed(110, "e2e/train", "pub"))
    assert sampling.stable_seed(110, "e2e/train", "pub") != sampling.stable_seed(110, "e2e/train", "bar")


def test_fraction_one_keeps_everything():
    records = synthetic({"a": 13, "b": 2})
    kept, counts = sampling.sample_inputs(records, by_stratum, 1.0, 110, "toy/train")
    assert kept == list(range(len(records)))
    assert all(c.inputs == c.inputs_full for c in counts.values())


def test_input_stratum_comes_from_its_first_record():
    records = [{"context": "x", "s": "first"}, {"context": "y", "s": "other"}, {"context": "x", "s": "second"}]
    groups = sampling.group_inputs(records, lambda r: r["s"])
    assert groups == [sampling.Input("x", "first", [0, 2]), sampling.Input("y", "other", [1])]


@pytest.mark.parametrize("context, stratum", [
    ("name : The Vaults | Type : pub | price : cheap", "pub"),
    ("name : Blue Spice | Type : coffee shop", "coffee shop"),
    ("name : Alimentum | area : city centre", "no type"),
])
def test_e2e_stratum_is_the_type_field(context, stratum):
    assert sampling.e2e_stratum({"context": context}) == stratum


def test_dart_strata_pool_rare_first_predicates():
    # 1,000 inputs: 'eattype' 700, 'country' 295, 'year' 5 (0.5% -> still a stratum), 'rare' ... below 0.5%
    def inputs(predicate, n):
        return [{"context": f"s{i} : {predicate} : o | s{i} : x : y", "completion": "t"} for i in range(n)]
    train = inputs("eattype", 500) + inputs("rare", 4)
    test = inputs("eattype", 200) + inputs("country", 291) + inputs("year", 5)
    stratum_of = sampling.dart_stratum_function({"train": train, "test": test})
    strata = [stratum_of(r) for r in (train[0], test[300], test[-1], train[-1])]
    assert strata == ["eattype", "country", "year", "other"]
    assert sampling.first_predicate({"context": "a : b c : d | e : f : g"}) == "b c"
