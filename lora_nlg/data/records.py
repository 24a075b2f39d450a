"""The raw files of one dataset -> {split: context/completion records}.

Shared by data/prepare.py and data/prepare_corpus.py, so both read a dataset the same way.
"""
from lora_nlg.data import fetch, format_converting, sampling

FORMATTERS = {"e2e": format_converting.format_e2e, "webnlg": format_converting.format_webnlg,
              "dart": format_converting.format_dart, "squad": format_converting.format_squad}


def load_records(dataset, fetched, holdout=None):
    """{split: records}, {split: notes}; the offline DART training pool is read as formatted records;
    SQuAD's valid split is held out of its train file (`holdout`: (valid_fraction, seed))."""
    records, notes = {}, {}
    for split, item in fetched.items():
        if item.raw == fetch.DART_TRAIN_POOL:
            records[split], notes[split] = format_converting.read_formatted(item.local)
            format_converting.check_triple_contexts(records[split], item.local)
        else:
            records[split], notes[split] = FORMATTERS[dataset](item.local)
    if dataset == "squad":
        train, valid = sampling.hold_out_articles(records["train"], *holdout, "squad/holdout")
        records = {"train": train, "valid": valid, "test": records["test"]}
        notes = {"train": notes["train"], "valid": [], "test": notes["test"]}
    return records, notes
