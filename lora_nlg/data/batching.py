"""Encoded examples -> numpy batches that both frameworks consume unchanged.

One example (context ids, completion ids) becomes, as in microsoft/LoRA's `FT_Dataset`:
  input  = (context + completion)[:seq_len]
  target = (context + completion)[1:seq_len + 1]   (the next token; the shift lives in the data)
  mask   = 1.0 where the target is a completion token of the kept input, else 0.0
padded with id 0 / mask 0.0. An example longer than seq_len keeps its first seq_len tokens, like
the reference; such truncations are counted (`TrainBatches.n_truncated`) so callers report them.

The reference pads every row to seq_len (512), while E2E rows average ~53 tokens; here a batch is
padded to its longest row rounded up to a multiple of `pad_multiple` (8 suits GPU matmuls; Jittor's
kernels are compiled per operator graph and dtype, not per input size, so the number of distinct widths
costs it no compiling), or to seq_len with `fixed_length=True`.
"""
from typing import NamedTuple

import numpy as np

from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import read_jsonl

PAD_ID = 0
FILL_SEED = 911  # the reference's random.Random(911) that fills the last batch


class Batch(NamedTuple):
    input: np.ndarray  # int64 [B, T]
    target: np.ndarray  # int64 [B, T]
    mask: np.ndarray  # float32 [B, T]
    lengths: np.ndarray  # int64 [B]: real (non-pad) tokens of each row
    n_real_tokens: int  # lengths.sum()
    ids: np.ndarray  # int64 [B]: example indices (line numbers - 1 of the encoded file)


def load_encoded(path, vocab_size=None):
    """[(context_ids, completion_ids)] of an encoded jsonl file; bad lines are NLGErrors naming file and line.

    With `vocab_size` every id must be below it: an id outside the model's vocabulary would index past
    the embedding table (garbage in one framework, an IndexError deep inside the other)."""
    examples = []
    for number, item in read_jsonl(path, required=("context", "completion")):
        for key in ("context", "completion"):
            ids = item[key]
            if not (isinstance(ids, list) and all(isinstance(i, int) and i >= 0 for i in ids)):
                raise NLGError(f"{path}: line {number}: {key!r} must be a list of token ids")
            if not ids:
                raise NLGError(f"{path}: line {number}: empty {key!r}")
            if vocab_size is not None and max(ids) >= vocab_size:
                raise NLGError(f"{path}: line {number}: token id {max(ids)} in {key!r} is outside the model's "
                               f"vocabulary of {vocab_size} (encoded for another model?)")
        examples.append((item["context"], item["completion"]))
    return examples


def make_example(context, completion, seq_len):
    """(input, target, mask) of one example, unpadded: lengths n, n or n-1, n with n = min(len, seq_len)."""
    tokens = list(context) + list(completion)
    inputs = np.asarray(tokens[:seq_len], dtype=np.int64)
    target = np.asarray(tokens[1:seq_len + 1], dtype=np.int64)
    mask = np.zeros(len(inputs), dtype=np.float32)
    mask[max(len(context) - 1, 0):len(inputs) - 1] = 1.0
    return inputs, target, mask


def padded_length(longest, seq_len, pad_multiple=8, fixed_length=False):
    """Row length of a batch: seq_len if fixed, else `longest` rounded up to pad_multiple, at most seq_len."""
    if fixed_length:
        return seq_len
    return min(seq_len, -(-longest // pad_multiple) * pad_multiple)


def collate(examples, ids, seq_len, pad_multiple=8, fixed_length=False):
    """Batch of the examples with indices `ids`."""
    rows = [make_example(*examples[i], seq_len) for i in ids]
    lengths = np.array([len(inputs) for inputs, _, _ in rows], dtype=np.int64)
    width = padded_length(int(lengths.max()), seq_len, pad_multiple, fixed_length)
    inputs = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    target = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.float32)
    for row, (x, y, m) in enumerate(rows):
        inputs[row, :len(x)] = x
        target[row, :len(y)] = y
        mask[row, :len(m)] = m
    return Batch(inputs, target, mask, lengths, int(lengths.sum()), np.asarray(ids, dtype=np.int64))


def count_truncated(examples, seq_len):
    return sum(len(context) + len(completion) > seq_len for context, completion in examples)


def count_without_targets(examples, seq_len):
    """Examples whose context fills seq_len, so no completion token is left to train on (their loss mask is 0)."""
    return sum(len(context) >= seq_len for context, _ in examples)


class TrainBatches:
    """Shuffled training batches; the epoch order depends only on (seed, epoch), so a run resumes exactly.

    As in the reference, an epoch has ceil(n / batch_size) full batches: the permutation runs over
    n_batches * batch_size slots and slots beyond the n examples are filled with examples drawn by
    a generator seeded with (911, epoch) (the reference draws them from random.Random(911)).
    """

    def __init__(self, examples, batch_size, seq_len, seed, pad_multiple=8, fixed_length=False):
        if not examples:
            raise ValueError("no training examples")
        self.examples, self.batch_size, self.seq_len, self.seed = examples, batch_size, seq_len, seed
        self.pad_multiple, self.fixed_length = pad_multiple, fixed_length
        self.n_truncated = count_truncated(examples, seq_len)
        self.n_without_targets = count_without_targets(examples, seq_len)

    def __len__(self):
        return -(-len(self.examples) // self.batch_size)

    def order(self, epoch):
        """Example indices of the epoch's slots, batch after batch."""
        n = len(self.examples)
        slots = np.random.default_rng([self.seed, epoch]).permutation(len(self) * self.batch_size)
        fill = np.random.default_rng([FILL_SEED, epoch]).integers(0, n, size=len(slots) - n)
        extra = slots >= n
        slots[extra] = fill[slots[extra] - n]
        return slots

    def epoch(self, epoch, start_batch=0):
        """Batches start_batch, start_batch + 1, ... of the epoch (start_batch > 0 resumes mid-epoch)."""
        order = self.order(epoch)
        for k in range(start_batch, len(self)):
            ids = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield collate(self.examples, ids, self.seq_len, self.pad_multiple, self.fixed_length)


def eval_batches(examples, batch_size, seq_len, pad_multiple=8, fixed_length=False):
    """Batches in file order, no shuffling and no filling (the last batch may be smaller)."""
    for start in range(0, len(examples), batch_size):
        ids = np.arange(start, min(start + batch_size, len(examples)))
        yield collate(examples, ids, seq_len, pad_multiple, fixed_length)


class QueryBatch(NamedTuple):
    """Beam-search prompts, unpadded; `left_padded` pads them for beam search (last tokens in the last column)."""
    ids: np.ndarray  # int64 [B]: indices of the queries (e.g. unique-context indices)
    contexts: list  # B int64 arrays
    lengths: np.ndarray  # int64 [B]

    def left_padded(self, pad_id=PAD_ID):
        out = np.full((len(self.contexts), int(self.lengths.max())), pad_id, dtype=np.int64)
        for row, context in enumerate(self.contexts):
            out[row, out.shape[1] - len(context):] = context
        return out


def query_context(context, seq_len, eval_len):
    """The prompt of beam search: the LAST seq_len - eval_len context tokens (reference: direct=-1)."""
    if eval_len >= seq_len:
        raise ValueError(f"eval_len {eval_len} must be smaller than seq_len {seq_len}")
    return np.asarray(context[-(seq_len - eval_len):], dtype=np.int64)


def query_batches(contexts, batch_size, seq_len, eval_len):
    """QueryBatches over `contexts` (lists of ids) in order."""
    for start in range(0, len(contexts), batch_size):
        chunk = [query_context(c, seq_len, eval_len) for c in contexts[start:start + batch_size]]
        ids = np.arange(start, start + len(chunk), dtype=np.int64)
        yield QueryBatch(ids, chunk, np.array([len(c) for c in chunk], dtype=np.int64))


def unique_contexts(examples):
    """(unique contexts in order of first appearance, for each the indices of its rows).

    The reference decodes every test row, i.e. each E2E input ~7 times with identical results;
    beam search decodes each unique context once and decode maps the result back to its rows.
    """
    groups = {}
    for index, (context, _) in enumerate(examples):
        groups.setdefault(tuple(context), []).append(index)
    return [list(context) for context in groups], list(groups.values())
