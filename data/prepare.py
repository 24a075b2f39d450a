"""Prepare one NLG dataset: fetch and verify, format, sample by input, encode.

    python data/prepare.py --dataset {e2e,webnlg,dart} [--source DIR] [--fraction 0.18] [--seed 110] [--out DIR]

1. Raw files and the GPT-2 vocabulary come from their official locations, or with --source from a
   local mirror laid out like microsoft/LoRA's examples/NLG; every file is checked against its
   recorded sha256 (lora_nlg/sources.py). The vocabulary is installed in data/vocab (--vocab-dir).
2. Records get exactly microsoft/LoRA's context / completion texts (lora_nlg/formats.py).
3. Each split keeps `fraction` of the inputs of each stratum with all their references
   (lora_nlg/sampling.py); --fraction 1.0 keeps everything.
4. Ids as microsoft/LoRA's `gpt2_encode.py --add_bos --add_eos` (lora_nlg/encoding.py).
Writes <split>_formatted.jsonl (texts + metadata), <split>.jsonl (ids) and manifest.json into
data/<dataset>/full or data/<dataset>/sampled_<pct>pct (--out). Same inputs -> same bytes.
"""
import argparse
import json
import os
import time

from lora_nlg import formats, sampling, sources
from lora_nlg.encoding import encode_records
from lora_nlg.errors import run_cli
from lora_nlg.files import atomic_open, sha256_file
from lora_nlg.jsonl import write_jsonl
from lora_nlg.tokenizer import GPT2Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATTERS = {"e2e": formats.format_e2e, "webnlg": formats.format_webnlg, "dart": formats.format_dart}
STRATUM_RULES = {
    "e2e": "the Type value of the meaning representation ('no type' when absent)",
    "webnlg": "the WebNLG category",
    "dart": f"the lower-cased predicate of the first triple; predicates of fewer than "
            f"{sampling.DART_MIN_SHARE:.1%} of all inputs pooled as '{sampling.OTHER}'",
}


def fraction_arg(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: must be in (0, 1]")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(FORMATTERS))
    parser.add_argument("--source", help="local mirror (layout of microsoft/LoRA examples/NLG); default: download")
    parser.add_argument("--fraction", type=fraction_arg, default=0.18, help="share of each stratum's inputs kept")
    parser.add_argument("--seed", type=int, default=110)
    parser.add_argument("--out", help="output folder (default data/<dataset>/full or sampled_<pct>pct)")
    parser.add_argument("--vocab-dir", default=os.path.join(ROOT, "data", "vocab"),
                        help="where the GPT-2 vocabulary is installed (decode / beam take it as --vocab)")
    parser.add_argument("--download-dir", default=os.path.join(ROOT, "data", "raw"), help="cache for downloads")
    args = parser.parse_args(argv)
    if args.out is None:
        name = "full" if args.fraction == 1 else f"sampled_{round(args.fraction * 100, 6):g}pct"
        args.out = os.path.join(ROOT, "data", args.dataset, name)
    return args


def load_records(dataset, fetched):
    """{split: records}, {split: notes}; the offline DART training pool is read as formatted records."""
    records, notes = {}, {}
    for split, item in fetched.items():
        if item.raw == sources.DART_TRAIN_POOL:
            records[split], notes[split] = formats.read_formatted(item.local)
            formats.check_triple_contexts(records[split], item.local)
        else:
            records[split], notes[split] = FORMATTERS[dataset](item.local)
    return records, notes


def stratum_function(dataset, records):
    if dataset == "dart":
        return sampling.dart_stratum_function(records)
    return {"e2e": sampling.e2e_stratum, "webnlg": sampling.webnlg_stratum}[dataset]


def pool_note(fraction):
    share = min(1.0, fraction / sources.DART_POOL_FRACTION)
    return share, (f"DART's full train split is not in the source: training inputs are drawn from "
                   f"{sources.DART_TRAIN_POOL.path} (an 18% line sample of DART train from 1Reminding/LoRA_Jittor), "
                   f"keeping min(1, fraction / 0.18) = {share:.4g} of its inputs per stratum, "
                   f"i.e. about {min(fraction, sources.DART_POOL_FRACTION):.4g} of DART train's references")


def stratum_table(dataset, fraction, seed, counts):
    """Per stratum and split: inputs kept/all (references kept), like the seed README's table."""
    splits = list(counts)
    totals = {}
    for split in splits:
        for stratum, c in counts[split].items():
            totals[stratum] = totals.get(stratum, 0) + c.inputs_full
    order = sorted(totals, key=lambda s: (s in (sampling.OTHER, sampling.NO_TYPE), -totals[s], s))

    def cell(cs):
        return f"{sum(c.inputs for c in cs)}/{sum(c.inputs_full for c in cs)} ({sum(c.references for c in cs)})"

    rows = [["stratum", *splits, "total"]]
    for stratum in order:
        per_split = [[counts[split][stratum]] if stratum in counts[split] else [] for split in splits]
        rows.append([stratum, *(cell(cs) for cs in per_split), cell([c for cs in per_split for c in cs])])
    every = [list(counts[split].values()) for split in splits]
    rows.append(["all", *(cell(cs) for cs in every), cell([c for cs in every for c in cs])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{dataset}: {fraction:g} of the inputs of each stratum (seed {seed}); "
             f"cells: inputs kept/all (references kept)"]
    lines += ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def write_split(out, split, records, tokenizer, files):
    """Write <split>_formatted.jsonl and the encoded <split>.jsonl, add their sha256 to `files`;
    return the longest example in tokens (rows beyond the training seq_len get truncated)."""
    encoded = encode_records(tokenizer, records)
    for name, items in ((f"{split}_formatted.jsonl", records), (f"{split}.jsonl", encoded)):
        write_jsonl(os.path.join(out, name), items)
        files[name] = sha256_file(os.path.join(out, name))
    return max(len(item["context"]) + len(item["completion"]) for item in encoded)


def prepare(args):
    started = time.time()
    vocab = sources.install_vocab(args.vocab_dir, args.source, args.download_dir)
    fetched = sources.fetch_splits(args.dataset, args.source, args.download_dir)
    for item in [*vocab, *fetched.values()]:
        if not item.verified:
            print(f"note: {item.local}: no sha256 recorded in lora_nlg/sources.py to check it against "
                  f"(its sha256 is {item.sha256}); check the file, then record the sum")
    records, notes = load_records(args.dataset, fetched)
    stratum_of = stratum_function(args.dataset, records)
    tokenizer = GPT2Tokenizer(args.vocab_dir)

    uses_pool = fetched["train"].raw == sources.DART_TRAIN_POOL
    pool_share, note = pool_note(args.fraction) if uses_pool else (None, None)
    if uses_pool:
        print(f"NOTE: {note}")
    counts, splits, files = {}, {}, {}
    for split, rows in records.items():
        fraction = pool_share if split == "train" and uses_pool else args.fraction
        kept, counts[split] = sampling.sample_inputs(rows, stratum_of, fraction, args.seed, f"{args.dataset}/{split}")
        kept_rows = [rows[i] for i in kept]
        longest = write_split(args.out, split, kept_rows, tokenizer, files)
        splits[split] = {
            "fraction": fraction,
            "inputs": sum(c.inputs for c in counts[split].values()),
            "references": len(kept_rows),
            "inputs_full": sum(c.inputs_full for c in counts[split].values()),
            "references_full": len(rows),
            "longest_example_tokens": longest,
            "notes": notes[split],
            "strata": {stratum: counts[split][stratum]._asdict() for stratum in sorted(counts[split])},
        }
    manifest = {
        "dataset": args.dataset,
        "fraction": args.fraction,
        "seed": args.seed,
        "sampling": f"stratified by input, strata: {STRATUM_RULES[args.dataset]}; each stratum keeps "
                    "max(1, round(fraction * inputs)) inputs with all their references; file order kept",
        "source": "local mirror" if args.source else "official download",
        "raw_files": [{"file": item.raw.path, "sha256": item.sha256, "sha256_recorded": item.verified}
                      for item in [*vocab, *fetched.values()]],
        "dart_train_pool": {"file": sources.DART_TRAIN_POOL.path, "fraction_of_pool": pool_share, "note": note}
        if uses_pool else None,
        "splits": splits,
        "files": files,
    }
    with atomic_open(os.path.join(args.out, "manifest.json")) as f:
        f.write(json.dumps(manifest, indent=2) + "\n")

    print(stratum_table(args.dataset, args.fraction, args.seed, counts))
    for split in records:
        for line in notes[split]:
            print(f"note: {args.dataset} {split}: {line}")
    print(f"wrote {', '.join([*files, 'manifest.json'])} to {args.out}; vocabulary in {args.vocab_dir} "
          f"({time.time() - started:.1f} s)")
    return manifest


def main(argv=None):
    prepare(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
