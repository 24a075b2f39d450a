"""Prepare one NLG dataset: fetch and verify, format, sample by input, encode.

    python data/prepare.py --dataset {e2e,webnlg,dart,squad} [--source DIR] [--fraction 0.18] [--seed 110] [--out DIR]
                           [--seq_len 512] [--answer_tokens 32] [--valid_fraction 0.05] [--test_window beginning]
                           (the last four: squad only)

1. Raw files and the GPT-2 vocabulary come from their official locations, or with --source from a
   local mirror laid out like microsoft/LoRA's examples/NLG; every file is checked against its
   recorded sha256 (lora_nlg/data/fetch.py). The vocabulary is installed in data/vocab (--vocab-dir).
2. Records get exactly microsoft/LoRA's context / completion texts (lora_nlg/data/format_converting.py).
3. Each split keeps `fraction` of the inputs of each stratum with all their references
   (lora_nlg/data/sampling.py); --fraction 1.0 keeps everything.
4. Ids as microsoft/LoRA's `gpt2_encode.py --add_bos --add_eos` (lora_nlg/data/tokenizer.py).
SQuAD v1.1: the official dev file is the test split; `valid_fraction` of the train file's articles
(at least one) is held out as the valid split before sampling; sampling keeps whole articles; prompts
longer than the model's window get their paragraph cut (lora_nlg/data/squad_truncation.py).
Writes <split>_formatted.jsonl (texts + metadata), <split>.jsonl (ids) and manifest.json into
data/<dataset>/full or data/<dataset>/sampled_<pct>pct (--out). Same inputs -> same bytes.
"""
import argparse
import glob
import json
import os
import shutil
import tempfile
import time

from lora_nlg.data import fetch, sampling, squad_truncation
from lora_nlg.data.records import FORMATTERS, load_records
from lora_nlg.data.tokenizer import GPT2Tokenizer, encode_records
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.files import atomic_open, sha256_file
from lora_nlg.util.flags import positive_int
from lora_nlg.util.jsonl import write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATUM_RULES = {
    "e2e": "the Type value of the meaning representation ('no type' when absent)",
    "webnlg": "the WebNLG category",
    "dart": f"the lower-cased predicate of the first triple; predicates of fewer than "
            f"{sampling.DART_MIN_SHARE:.1%} of all inputs pooled as '{sampling.OTHER}'",
}
SQUAD_DEFAULTS = {"seq_len": 512, "answer_tokens": 32, "valid_fraction": 0.05, "test_window": "beginning"}
SQUAD_SAMPLING = ("by article: each split keeps max(1, round(fraction * articles)) whole articles (by title) with all "
                  "their questions; file order kept. valid: valid_fraction of the train file's articles (at least "
                  "one), held out before sampling; test: the official dev file")
SQUAD_TRUNCATION = ("prompts over budget get their paragraph cut at word boundaries (never the question): contexts "
                    "incl. EOS <= seq_len - answer_tokens ids; train / valid also context + completion <= seq_len, "
                    "the window keeping the first gold answer (words go from the end farther from it first); "
                    "test keeps the paragraph's beginning (the gold answers must not steer the input), or with "
                    "test_window 'answer' the same window around its first gold answer as training (an oracle "
                    "passage: it measures reading the answer out of a given window, not finding it)")


def fraction_arg(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: must be in (0, 1]")
    return value


def share_arg(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be in (0, 1)")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(FORMATTERS))
    parser.add_argument("--source", help="local mirror (layout of microsoft/LoRA examples/NLG); default: download")
    parser.add_argument("--fraction", type=fraction_arg, default=0.18,
                        help="share of each stratum's inputs kept (SQuAD: of each split's articles)")
    parser.add_argument("--seed", type=int, default=110)
    parser.add_argument("--out", help="output folder (default data/<dataset>/full or sampled_<pct>pct)")
    parser.add_argument("--vocab-dir", default=os.path.join(ROOT, "data", "vocab"),
                        help="where the GPT-2 vocabulary is installed (decode / beam take it as --vocab)")
    parser.add_argument("--download-dir", default=os.path.join(ROOT, "data", "raw"), help="cache for downloads")
    squad = parser.add_argument_group("SQuAD only (an error with the other datasets, whose texts are never cut)")
    squad.add_argument("--seq_len", type=positive_int,
                       help="the training / generation window: prompts are cut to fit it (default 512)")
    squad.add_argument("--answer_tokens", type=positive_int,
                       help="ids kept free for the generated answer: contexts get at most seq_len - answer_tokens "
                            "ids, EOS included (default 32; the beam stage's eval_len)")
    squad.add_argument("--valid_fraction", type=share_arg,
                       help="share of the train file's articles held out as the valid split, at least one "
                            "(default 0.05)")
    squad.add_argument("--test_window", choices=squad_truncation.TEST_WINDOWS,
                       help="how a test paragraph over budget is cut: its beginning (default; nothing of the answers "
                            "steers it) or a window around its first gold answer, as in training (an oracle passage, "
                            "for small models: it shows reading, not finding, and is reported as such)")
    args = parser.parse_args(argv)
    given = [name for name in SQUAD_DEFAULTS if getattr(args, name) is not None]
    if args.dataset != "squad" and given:
        parser.error(f"--{given[0]} only applies to --dataset squad")
    if args.dataset == "squad":
        for name, default in SQUAD_DEFAULTS.items():
            setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
        if args.answer_tokens >= args.seq_len:
            parser.error(f"--answer_tokens {args.answer_tokens} leaves no room for a prompt "
                         f"in --seq_len {args.seq_len}")
    if args.out is None:
        name = "full" if args.fraction == 1 else f"sampled_{round(args.fraction * 100, 6):g}pct"
        args.out = os.path.join(ROOT, "data", args.dataset, name)
    return args


def stratum_function(dataset, records):
    if dataset == "dart":
        return sampling.dart_stratum_function(records)
    return {"e2e": sampling.e2e_stratum, "webnlg": sampling.webnlg_stratum, "squad": sampling.squad_stratum}[dataset]


def raw_file_of(split, fetched):
    """The raw file a split comes from (SQuAD's valid split: the train file)."""
    return fetched[split if split in fetched else "train"]


def pool_note(fraction):
    share = min(1.0, fraction / fetch.DART_POOL_FRACTION)
    return share, (f"DART's full train split is not in the source: training inputs are drawn from "
                   f"{fetch.DART_TRAIN_POOL.path} (an 18% line sample of DART train from 1Reminding/LoRA_Jittor), "
                   f"keeping min(1, fraction / 0.18) = {share:.4g} of its inputs per stratum, "
                   f"i.e. about {min(fraction, fetch.DART_POOL_FRACTION):.4g} of DART train's references")


def rebuilt_train_note():
    return (f"the official SQuAD v1.1 train file is not in the source: train and valid come from "
            f"{fetch.SQUAD_TRAIN_REBUILT.path} (rebuilt from the official explorer pages: the same paragraphs, "
            f"questions and answers, synthetic ids)")


def sampling_rule(dataset):
    if dataset == "squad":
        return SQUAD_SAMPLING
    return (f"stratified by input, strata: {STRATUM_RULES[dataset]}; each stratum keeps "
            "max(1, round(fraction * inputs)) inputs with all their references; file order kept")


def stratum_table(dataset, fraction, seed, counts):
    """Per stratum and split: inputs kept/all (references kept), like the prior reproduction's README table; SQuAD's
    inputs are articles and its references questions."""
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
    inputs, references = ("articles", "questions") if dataset == "squad" else ("inputs", "references")
    lines = [f"{dataset}: {fraction:g} of the {inputs} of each stratum (seed {seed}); "
             f"cells: {inputs} kept/all ({references} kept)"]
    lines += ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def encode_split(args, split, records, tokenizer, source):
    """(records, encoded rows, truncation counts or None); SQuAD prompts are cut to fit --seq_len."""
    if args.dataset != "squad":
        return records, encode_records(tokenizer, records), None
    keep_answer = split != "test" or args.test_window == "answer"
    return squad_truncation.fit_records(records, tokenizer, args.seq_len, args.answer_tokens,
                                        keep_answer=keep_answer, source=source)


def truncation_line(split, count, args):
    line = (f"note: squad {split}: paragraph cut in {count['truncated']} of {count['questions']} prompts to fit "
            f"--seq_len {args.seq_len} (contexts <= {args.seq_len - args.answer_tokens} ids incl. EOS)")
    if "answers_cut_off" in count:
        line += f"; questions that lost every gold answer to the cut: {count['answers_cut_off']}"
    return line + f"; answer_start mismatches in cut rows (located by text): {count['answer_start_mismatches']}"


def squad_settings(args, rebuilt_note, counts):
    return {"seq_len": args.seq_len, "answer_tokens": args.answer_tokens,
            "context_budget": args.seq_len - args.answer_tokens, "truncation": SQUAD_TRUNCATION,
            "test_window": args.test_window,
            "valid_fraction": args.valid_fraction,
            "valid_held_out": {"articles": sum(c.inputs_full for c in counts["valid"].values()),
                               "questions": sum(c.references_full for c in counts["valid"].values())},
            "train_rebuilt_note": rebuilt_note}


def write_split(out, split, records, encoded, files):
    """Write <split>_formatted.jsonl and the encoded <split>.jsonl, add their sha256 to `files`;
    return the longest example in tokens (rows beyond the training seq_len get truncated)."""
    for name, items in ((f"{split}_formatted.jsonl", records), (f"{split}.jsonl", encoded)):
        write_jsonl(os.path.join(out, name), items)
        files[name] = sha256_file(os.path.join(out, name))
    return max(len(item["context"]) + len(item["completion"]) for item in encoded)


def staging_dir(out):
    """A fresh folder beside `out` for this run's files; those of an earlier, killed run are removed first."""
    parent, name = os.path.split(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    for leftover in glob.glob(os.path.join(parent, f".{glob.escape(name)}.partial-*")):
        shutil.rmtree(leftover, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)


def publish(staging, out, names):
    """Move a finished run's files into `out`. The old manifest goes first and the new one last, so a
    folder with a manifest always holds one run's complete output (a killed move leaves no manifest)."""
    os.makedirs(out, exist_ok=True)
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        os.remove(manifest)
    for name in sorted(names, key=lambda n: n == "manifest.json"):
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    shutil.rmtree(staging)


def prepare(args):
    started = time.time()
    vocab = fetch.install_vocab(args.vocab_dir, args.source, args.download_dir)
    fetched = fetch.fetch_splits(args.dataset, args.source, args.download_dir)
    for item in [*vocab, *fetched.values()]:
        if not item.verified:
            print(f"note: {item.local}: no sha256 recorded in lora_nlg/data/fetch.py to check it against "
                  f"(its sha256 is {item.sha256}); check the file, then record the sum")
    records, notes = load_records(args.dataset, fetched, (args.valid_fraction, args.seed))
    for split, rows in records.items():
        if not rows:
            raise NLGError(f"{raw_file_of(split, fetched).local}: no {args.dataset} records for the {split} split"
                           + (" (SQuAD's valid split is held out of the train articles: it needs at least two)"
                              if args.dataset == "squad" else ""))
    stratum_of = stratum_function(args.dataset, records)
    key_of = sampling.squad_article if args.dataset == "squad" else sampling.context_text
    tokenizer = GPT2Tokenizer(args.vocab_dir)

    uses_pool = fetched["train"].raw == fetch.DART_TRAIN_POOL
    pool_share, note = pool_note(args.fraction) if uses_pool else (None, None)
    if uses_pool:
        print(f"NOTE: {note}")
    rebuilt_note = rebuilt_train_note() if fetched["train"].raw == fetch.SQUAD_TRAIN_REBUILT else None
    if rebuilt_note:
        print(f"NOTE: {rebuilt_note}")
    counts, splits, files, truncation = {}, {}, {}, {}
    staging = staging_dir(args.out)
    try:
        for split, rows in records.items():
            fraction = pool_share if split == "train" and uses_pool else args.fraction
            kept, counts[split] = sampling.sample_inputs(rows, stratum_of, fraction, args.seed,
                                                         f"{args.dataset}/{split}", key_of)
            kept_rows, encoded, truncation[split] = encode_split(args, split, [rows[i] for i in kept], tokenizer,
                                                                 raw_file_of(split, fetched).local)
            longest = write_split(staging, split, kept_rows, encoded, files)
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
            if truncation[split] is not None:
                truncation[split] = {"questions": len(kept_rows), **truncation[split]}
                splits[split]["truncation"] = truncation[split]
        manifest = {
            "dataset": args.dataset,
            "fraction": args.fraction,
            "seed": args.seed,
            "sampling": sampling_rule(args.dataset),
            "source": "local mirror" if args.source else "official download",
            "raw_files": [{"file": item.raw.path, "sha256": item.sha256, "sha256_recorded": item.verified}
                          for item in [*vocab, *fetched.values()]],
            "dart_train_pool": {"file": fetch.DART_TRAIN_POOL.path, "fraction_of_pool": pool_share, "note": note}
            if uses_pool else None,
            **({"squad": squad_settings(args, rebuilt_note, counts)} if args.dataset == "squad" else {}),
            "splits": splits,
            "files": files,
        }
        with atomic_open(os.path.join(staging, "manifest.json")) as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
        publish(staging, args.out, [*files, "manifest.json"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # (gone already when published)

    print(stratum_table(args.dataset, args.fraction, args.seed, counts))
    for split in records:
        for line in notes[split]:
            print(f"note: {args.dataset} {split}: {line}")
        if truncation[split] is not None:
            print(truncation_line(split, truncation[split], args))
    print(f"wrote {', '.join([*files, 'manifest.json'])} to {args.out}; vocabulary in {args.vocab_dir} "
          f"({time.time() - started:.1f} s)")
    return manifest


def main(argv=None):
    prepare(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
