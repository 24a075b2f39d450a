"""Beam-search test cases shared by both trees' tests: numpy and lora_nlg only, no framework.

- a random SMALL GPT-2 whose EOS ids are likely, prompts of mixed lengths and search settings, for
  the batched search against alignment.beam_reference and against itself at batch size 1;
- E2E test inputs and a peaked gpt2.tiny, for decoding the same inputs in both frameworks.
"""
import json

import numpy as np

from alignment.fixtures import SMALL, random_weights
from lora_nlg.data.batching import query_batches
from lora_nlg.data.format_converting import format_e2e
from lora_nlg.data.tokenizer import GPT2Tokenizer, encode_records
from lora_nlg.decode.beam import BeamSettings
from lora_nlg.util.jsonl import read_jsonl
from testpaths import MIRROR

EOS_IDS = (5, 17)
SEQ_LEN = 40

SETTINGS = [
    BeamSettings(beam=4, eval_len=16, length_penalty=0.8, no_repeat_ngram_size=3, repetition_penalty=1.3,
                 eos_ids=EOS_IDS),
    BeamSettings(beam=10, eval_len=16, length_penalty=1.0, no_repeat_ngram_size=2, min_length=3, eos_ids=EOS_IDS),
    BeamSettings(beam=6, eval_len=16, length_penalty=-0.5, no_repeat_ngram_size=1, repetition_penalty=0.7,
                 eos_ids=EOS_IDS),
]


def eos_prone_weights(seed=1, boost=3.0):
    """Random SMALL GPT-2 weights; ln_f's bias raises both EOS logits by ~`boost`, so about half the
    hypotheses end early (exercising the results and the early stop)."""
    weights = random_weights(SMALL, seed)
    for eos in EOS_IDS:
        row = weights["wte.weight"][eos]
        weights["ln_f.bias"] += np.float32(boost) * row / (row @ row)
    return weights


def random_prompts(n=24, seed=0):
    """n prompts of 3 to 19 random SMALL token ids."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, SMALL.vocab_size, rng.integers(3, 20)).tolist() for _ in range(n)]


class CountingModel:
    """Wraps a model and counts forward calls (= decoding steps run)."""

    def __init__(self, model):
        self.model, self.config, self.wte, self.calls = model, model.config, model.wte, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)

    def logits(self, hidden):
        return self.model.logits(hidden)


def decode_with(beam_search, model, prompts, settings, batch_size, seq_len=SEQ_LEN):
    """Predictions of a tree's beam_search over `prompts`, batch_size at a time."""
    out = []
    for batch in query_batches(prompts, batch_size, seq_len, settings.eval_len):
        out += beam_search(model, batch, settings)
    return out


# ---------------------------------------------------------------- E2E inputs, a peaked gpt2.tiny

# microsoft/LoRA's README E2E decoding, with a shorter eval_len to keep tests fast
E2E_FLAGS = ["--beam", "10", "--length_penalty", "0.8", "--no_repeat_ngram_size", "4",
             "--repetition_penalty", "1.0", "--eos_token_id", "628", "--seq_len", "512", "--eval_len", "32"]


def write_e2e_queries(path, n):
    """Write the first n unique E2E test inputs, encoded as data/prepare.py encodes them, as a jsonl test set."""
    records, _ = format_e2e(str(MIRROR / "data" / "e2e" / "test.txt"))
    tokenizer = GPT2Tokenizer(str(MIRROR / "vocab"))
    contexts, chosen = set(), []
    for record in records:
        if record["context"] not in contexts:
            contexts.add(record["context"])
            chosen.append(record)
        if len(chosen) == n:
            break
    encoded = encode_records(tokenizer, chosen)
    with open(path, "w") as f:
        f.writelines(json.dumps(item) + "\n" for item in encoded)
    return [item["context"] for item in encoded]


# LoRA B ~ N(0, 1): the adapter outweighs the random attention, so outputs depend on the input (with
# gpt2.tiny and the base below, 24 E2E inputs decode to 23-24 different outputs) and on the adapter
ADAPTER_B_STD = 1.0


def peaked_weights(config, seed, embedding_scale=10.0):
    """Random GPT-2 weights (tests/alignment/fixtures.py) with embeddings scaled up, so logits spread ~2
    over the vocabulary instead of ~0.2 and each step has a few clear favourites."""
    return random_weights(config, seed, embedding_scale=embedding_scale)


class Run:
    """Predictions and printed lines of one decode, with its work_dir written as WORK so runs compare."""

    def __init__(self, work_dir, printed):
        self.file = (work_dir / "predict.jsonl").read_bytes()
        self.predictions = [item for _, item in read_jsonl(work_dir / "predict.jsonl")]
        self.lines = [line.replace(str(work_dir), "WORK") for line in printed.splitlines()
                      if not line.startswith("decoded ")]  # the timing line
        self.timing = [line for line in printed.splitlines() if line.startswith("decoded ")]
