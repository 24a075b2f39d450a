"""GPT2Tokenizer agrees with two references on real data: transformers' GPT-2 tokenizer (test-only
dependency) and a plain-Python transcription of OpenAI's encoder.py algorithm (what
microsoft/LoRA's gpt2_encode.py runs), which shares no code with the `tokenizers` library."""
import json
import shutil
from functools import lru_cache

import pytest
import regex

from lora_nlg.data.format_converting import format_e2e, format_webnlg
from lora_nlg.data.tokenizer import EOS_ID, GPT2Tokenizer
from lora_nlg.util.errors import NLGError
from testpaths import MIRROR, VOCAB

TRICKY = ["Hello world", " Hello  world\n\n", "Café Adriatic costs £ 20–25 .", "it's, they'll, I'M", "\n\n",
          "<|endoftext|>", "ÆØÅ 東京 🙂", "a   b\t\tc  ", "1990s, 3.14 and 42,000", "don't  'quote'"]


@pytest.fixture(scope="module")
def texts():
    """Every line of E2E valid as written in the file and as encoded (context, ' ' + completion),
    plus 1,000 WebNLG train records spread over the whole file."""
    e2e_lines = (MIRROR / "data/e2e/valid.txt").read_text(encoding="utf-8").splitlines()
    e2e, _ = format_e2e(str(MIRROR / "data/e2e/valid.txt"))
    webnlg, _ = format_webnlg(str(MIRROR / "data/webnlg_challenge_2017/train.json"))
    webnlg = webnlg[::len(webnlg) // 1000][:1000]
    pairs = [text for r in e2e + webnlg for text in (r["context"], " " + r["completion"])]
    assert len(e2e_lines) == 4672 and len(webnlg) == 1000
    return e2e_lines + pairs + TRICKY


def transformers_gpt2(tmp_path_factory):
    """transformers 5's GPT-2 fast tokenizer from the same files. Its constructor with file paths builds
    an empty vocabulary in transformers 5, so load it like a saved model folder (vocab.json + merges.txt)."""
    from transformers import GPT2TokenizerFast
    folder = tmp_path_factory.mktemp("hf_gpt2")
    shutil.copyfile(VOCAB / "encoder.json", folder / "vocab.json")
    shutil.copyfile(VOCAB / "vocab.bpe", folder / "merges.txt")
    reference = GPT2TokenizerFast.from_pretrained(str(folder))
    assert reference.is_fast and len(reference) == 50257
    assert reference("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    return reference


def test_matches_transformers_gpt2_tokenizer(tokenizer, texts, tmp_path_factory):
    reference = transformers_gpt2(tmp_path_factory)
    data = [t for t in texts if "<|endoftext|>" not in t]  # transformers treats it as a special token
    expected = reference(data, add_special_tokens=False)["input_ids"]
    mismatches = [t for t, ids, ref in zip(data, tokenizer.encode_batch(data), expected) if ids != ref]
    assert mismatches == []


class OpenAIEncoder:
    """OpenAI's GPT-2 encoder.py algorithm: regex pre-tokenisation, bytes -> printable unicode, greedy
    lowest-rank pair merging."""

    PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def __init__(self, vocab_dir):
        self.encoder = json.loads((vocab_dir / "encoder.json").read_text(encoding="utf-8"))
        merges = (vocab_dir / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:-1]
        self.ranks = {tuple(line.split()): rank for rank, line in enumerate(merges)}
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        others = [b for b in range(256) if b not in printable]
        self.byte_char = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}

    @lru_cache(maxsize=None)
    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            rank, first, second = min((self.ranks.get(pair, float("inf")), *pair) for pair in zip(parts, parts[1:]))
            if rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text):
        ids = []
        for piece in self.PATTERN.findall(text):
            word = "".join(self.byte_char[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(word))
        return ids


def test_matches_openai_encoder_algorithm(tokenizer, texts):
    reference = OpenAIEncoder(VOCAB)
    assert reference.encode("Hello world") == [15496, 995]
    mismatches = [t for t, ids in zip(texts, tokenizer.encode_batch(texts)) if ids != reference.encode(t)]
    assert mismatches == []


def test_encode_and_encode_batch_agree_and_decode_round_trips(tokenizer, texts):
    sample = texts[::50] + TRICKY
    assert tokenizer.encode_batch(sample) == [tokenizer.encode(t) for t in sample]
    assert [tokenizer.decode(tokenizer.encode(t)) for t in sample] == sample


def test_special_ids(tokenizer):
    assert tokenizer.vocab_size == 50257
    assert tokenizer.decode([EOS_ID]) == "<|endoftext|>"
    assert tokenizer.encode("\n\n") == [628]  # the reference's second end-of-hypothesis id


def test_missing_or_broken_vocabulary_is_a_one_line_error(tmp_path):
    with pytest.raises(NLGError, match="encoder.json: GPT-2 vocabulary file missing"):
        GPT2Tokenizer(str(tmp_path))
    (tmp_path / "encoder.json").write_text("{not json", encoding="utf-8")
    shutil.copyfile(VOCAB / "vocab.bpe", tmp_path / "vocab.bpe")
    with pytest.raises(NLGError, match="encoder.json: not a GPT-2 encoder.json"):
        GPT2Tokenizer(str(tmp_path))
