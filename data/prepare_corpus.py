"""Build the CPU demo's pretraining corpus (non-E2E text as language-model examples).

    python data/prepare_corpus.py [--source DIR] [--squad_paragraphs N] [--out data/cpu_demo_base]

train.jsonl: WebNLG 2017 train + DART train (the offline 18% pool when the mirror has no full DART
train), both without records carrying E2E fields, + N evenly spaced SQuAD v1.1 TRAIN paragraphs in
chunks (never dev: the SQuAD pipeline tests on dev, and its base must not have read those paragraphs).
valid.jsonl: evenly spaced records of WebNLG dev + DART dev, filtered the same way. Both files are
encoded like data/prepare.py's output (records: context / completion ids; text: context
[<|endoftext|>], completion = all its ids), so gpt2_ft.py trains on them unchanged;
manifest.json records the sources (sha256), the settings and the counts.
"""
import argparse
import json
import os
import time

from lora_nlg.data import fetch
from lora_nlg.data import pretrain_corpus as corpus
from lora_nlg.data.records import load_records
from lora_nlg.data.sampling import evenly_spaced
from lora_nlg.data.tokenizer import GPT2Tokenizer, encode_records
from lora_nlg.util.errors import run_cli
from lora_nlg.util.files import atomic_open, sha256_file
from lora_nlg.util.jsonl import write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="local mirror (layout of microsoft/LoRA examples/NLG); default: download")
    parser.add_argument("--out", default=os.path.join(ROOT, "data", "cpu_demo_base"))
    parser.add_argument("--squad_paragraphs", type=int, default=2000,
                        help="add this many SQuAD v1.1 train paragraphs (Wikipedia) for vocabulary coverage; 0: none")
    parser.add_argument("--loss_on", default="text", choices=corpus.LOSS_ON,
                        help="records: loss on the sentence (as fine-tuning; half the cost) or on every token")
    parser.add_argument("--chunk_tokens", type=int, default=64, help="SQuAD paragraphs are cut into rows this long")
    parser.add_argument("--valid_examples", type=int, default=128, help="size of the validation set")
    parser.add_argument("--limit", type=int, default=None,
                        help="keep only N evenly spaced records of each source and N paragraphs (quick tests)")
    parser.add_argument("--vocab-dir", default=os.path.join(ROOT, "data", "vocab"))
    parser.add_argument("--download-dir", default=os.path.join(ROOT, "data", "raw"))
    args = parser.parse_args(argv)
    if args.valid_examples < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--valid_examples and --limit must be >= 1")
    if args.squad_paragraphs < 0:
        parser.error("--squad_paragraphs must be >= 0")
    return args


def filtered_records(dataset, args, log):
    """{split: records} of WebNLG or DART train / valid without E2E records; counts go to `log`."""
    fetched = fetch.fetch_splits(dataset, args.source, args.download_dir)
    fetched = {split: fetched[split] for split in ("train", "valid")}
    records, _ = load_records(dataset, fetched)
    kept = {}
    for split, rows in records.items():
        rows = evenly_spaced(rows, args.limit) if args.limit else rows
        kept[split], removed = corpus.without_e2e(rows)
        log[f"{dataset}/{split}"] = {"file": fetched[split].raw.path, "sha256": fetched[split].sha256,
                                     "records": len(rows), "e2e_records_removed": removed, "kept": len(kept[split])}
    return kept


def build(args):
    started = time.time()
    fetch.install_vocab(args.vocab_dir, args.source, args.download_dir)
    tokenizer = GPT2Tokenizer(args.vocab_dir)
    log = {}
    records = {dataset: filtered_records(dataset, args, log) for dataset in ("webnlg", "dart")}
    train = corpus.record_examples(encode_records(tokenizer, records["webnlg"]["train"] + records["dart"]["train"]),
                                   args.loss_on)
    valid_records = evenly_spaced(records["webnlg"]["valid"] + records["dart"]["valid"], args.valid_examples)
    valid = corpus.record_examples(encode_records(tokenizer, valid_records), args.loss_on)
    if args.squad_paragraphs:
        fetched = fetch.fetch_splits("squad", args.source, args.download_dir)["train"]
        count = min(args.squad_paragraphs, args.limit) if args.limit else args.squad_paragraphs
        paragraphs = evenly_spaced(corpus.squad_paragraphs(fetched.local), count)
        chunks = corpus.chunk_examples(tokenizer.encode_batch(paragraphs), args.chunk_tokens)
        train += chunks
        log["squad/train"] = {"file": fetched.raw.path, "sha256": fetched.sha256, "paragraphs": len(paragraphs),
                              "chunks": len(chunks), "chunk_tokens": args.chunk_tokens}
    files = {}
    for name, examples in (("train.jsonl", train), ("valid.jsonl", valid)):
        write_jsonl(os.path.join(args.out, name), examples)
        files[name] = {"examples": len(examples), "loss_tokens": sum(len(e["completion"]) for e in examples),
                       "tokens": sum(len(e["context"]) + len(e["completion"]) for e in examples),
                       "sha256": sha256_file(os.path.join(args.out, name))}
    manifest = {"purpose": "pretraining text of the cpu demo's base model (lora_nlg/data/pretrain_corpus.py)",
                "e2e_fields_removed": sorted(corpus.E2E_FIELDS), "loss_on": args.loss_on, "limit": args.limit,
                "sources": log, "files": files}
    with atomic_open(os.path.join(args.out, "manifest.json")) as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    for name, counts in log.items():
        removed = f", {counts['e2e_records_removed']} E2E records removed" if "e2e_records_removed" in counts else ""
        size = f"{counts['kept']} of {counts['records']} records" if "kept" in counts else \
            f"{counts['paragraphs']} paragraphs -> {counts['chunks']} chunks"
        print(f"{name}: {size}{removed}")
    for name, counts in files.items():
        print(f"wrote {os.path.join(args.out, name)}: {counts['examples']} examples, {counts['tokens']} tokens "
              f"({counts['loss_tokens']} with a loss)")
    print(f"({time.time() - started:.1f} s)")
    return manifest


def main(argv=None):
    build(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
