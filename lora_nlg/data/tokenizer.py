"""GPT-2 byte-level BPE, built from the original `encoder.json` + `vocab.bpe` files.

Uses the `tokenizers` library (Rust) with the exact GPT-2 pipeline: byte-level pre-tokenizer with
the GPT-2 regex, no prefix space, BPE with the OpenAI merges, byte-level decoder. The result equals
OpenAI's `encoder.py` (what microsoft/LoRA's `gpt2_encode.py` uses) token for token.

`encode_records` writes records as `gpt2_encode.py --add_bos --add_eos` does: context ids =
encode(context) + [<|endoftext|>]; completion ids = encode(' ' + completion) + [<|endoftext|>]. The
leading space makes the first completion word a word-initial token, as it is when the model continues
the context; the end token doubles as separator and stop signal.
"""
import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from lora_nlg.util.errors import NLGError

EOS_ID = 50256  # <|endoftext|>: also used as BOS and as the padding-free end marker
VOCAB_FILES = ("encoder.json", "vocab.bpe")


class GPT2Tokenizer:
    """encode(text) -> ids and decode(ids) -> text with GPT-2's vocabulary."""

    def __init__(self, vocab_dir):
        paths = [os.path.join(vocab_dir, name) for name in VOCAB_FILES]
        for path in paths:
            if not os.path.isfile(path):
                raise NLGError(f"{path}: GPT-2 vocabulary file missing (run data/prepare.py first)")
        try:
            with open(paths[0], encoding="utf-8") as f:
                vocab = json.load(f)
        except (ValueError, OSError) as err:
            raise NLGError(f"{paths[0]}: not a GPT-2 encoder.json ({err})") from None
        with open(paths[1], encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1:] if line and not line.startswith("#")]
        if not (isinstance(vocab, dict) and merges and all(len(pair) == 2 for pair in merges)):
            raise NLGError(f"{vocab_dir}: encoder.json / vocab.bpe are not a GPT-2 vocabulary and merge list")
        bpe = models.BPE(vocab=vocab, merges=merges, fuse_unk=False)
        self._tok = Tokenizer(bpe)
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        self._tok.decoder = decoders.ByteLevel()
        self.vocab_size = len(vocab)

    def encode(self, text):
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self._tok.decode(list(ids), skip_special_tokens=False)

    @property
    def pipeline(self):
        """The `tokenizers` pipeline itself (a file written from it, e.g. tokenizer.json, encodes as this does)."""
        return self._tok


def encode_records(tokenizer, records):
    """[{"context": [ids], "completion": [ids]}] for the records, in order."""
    contexts = tokenizer.encode_batch([record["context"] for record in records])
    completions = tokenizer.encode_batch([" " + record["completion"] for record in records])
    return [{"context": context + [EOS_ID], "completion": completion + [EOS_ID]}
            for context, completion in zip(contexts, completions)]
