"""Build the CPU demo's pretraining corpus from SQuAD v1.1 TRAIN paragraphs (Wikipedia prose), nothing else.

    python data/prepare_corpus.py [--source DIR] [--paragraphs N] [--out data/cpu_demo_base]

train.jsonl: a keywords -> sentence record for each sentence of the distinct paragraphs of SQuAD v1.1 train (all
of them, or N evenly spaced); valid.jsonl: the same of --valid_paragraphs other train paragraphs, held out. No
question, no answer, no SQuAD dev text (the SQuAD demo's test set), nothing of E2E, WebNLG or DART
(lora_nlg/data/pretrain_corpus.py). Records are encoded like data/prepare.py's output, so gpt2_ft.py trains on
them unchanged; manifest.json records the source (sha256), the settings and the counts.
"""
import argparse
import json
import os
import time

from lora_nlg.data import fetch
from lora_nlg.data import pretrain_corpus as corpus
from lora_nlg.data.sampling import evenly_spaced
from lora_nlg.data.tokenizer import GPT2Tokenizer, encode_records
from lora_nlg.util.errors import run_cli
from lora_nlg.util.files import atomic_open, sha256_file
from lora_nlg.util.flags import positive_int
from lora_nlg.util.jsonl import write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="local mirror (layout of microsoft/LoRA examples/NLG); default: download")
    parser.add_argument("--out", default=os.path.join(ROOT, "data", "cpu_demo_base"))
    parser.add_argument("--paragraphs", type=positive_int, default=None,
                        help="use only N evenly spaced paragraphs (validation included; quick tests); default: all")
    parser.add_argument("--valid_paragraphs", type=positive_int, default=64, help="paragraphs held out to validate")
    parser.add_argument("--vocab-dir", default=os.path.join(ROOT, "data", "vocab"))
    parser.add_argument("--download-dir", default=os.path.join(ROOT, "data", "raw"))
    return parser.parse_args(argv)


SEED = 110


def counts_of(path, examples):
    return {"examples": len(examples), "tokens": sum(len(e["context"]) + len(e["completion"]) for e in examples),
            "loss_tokens": sum(len(e["completion"]) for e in examples), "sha256": sha256_file(path)}


def build(args):
    started = time.time()
    fetch.install_vocab(args.vocab_dir, args.source, args.download_dir)
    tokenizer = GPT2Tokenizer(args.vocab_dir)
    fetched = fetch.fetch_splits("squad", args.source, args.download_dir)["train"]
    paragraphs = corpus.squad_paragraphs(fetched.local)
    if args.paragraphs:
        paragraphs = evenly_spaced(paragraphs, args.paragraphs)
    train_text, valid_text = corpus.split_paragraphs(paragraphs, args.valid_paragraphs)
    files = {}
    for name, texts in (("train.jsonl", train_text), ("valid.jsonl", valid_text)):
        path = os.path.join(args.out, name)
        examples = encode_records(tokenizer, corpus.keyword_records(texts, SEED))
        write_jsonl(path, examples)
        files[name] = {"paragraphs": len(texts), **counts_of(path, examples)}
    manifest = {"purpose": "pretraining text of the cpu demo's base model (lora_nlg/data/pretrain_corpus.py)",
                "text": "SQuAD v1.1 train paragraphs (Wikipedia); no question, answer, dev text, E2E, WebNLG or DART",
                "objective": "keywords -> sentence: a sentence's content words shuffled (seed 110), then the sentence",
                "source": {"file": fetched.raw.path, "sha256": fetched.sha256, "paragraphs": len(paragraphs)},
                "files": files}
    with atomic_open(os.path.join(args.out, "manifest.json")) as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    for name, counts in files.items():
        print(f"wrote {os.path.join(args.out, name)}: {counts['paragraphs']} paragraphs -> {counts['examples']} "
              f"keyword records, {counts['tokens']} tokens ({counts['loss_tokens']} with a loss)")
    print(f"({time.time() - started:.1f} s)")
    return manifest


def main(argv=None):
    build(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
