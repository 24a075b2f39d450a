"""Batches: microsoft/LoRA's (input, target, mask) per example, dynamic padding, deterministic epochs."""
import numpy as np
import pytest

from lora_nlg.data import batching
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import write_jsonl


def reference_item(context, completion, seq_len):
    """FT_Dataset.__getitem__ + padding_tokens of microsoft/LoRA (no prefix/infix, joint_lm off), restated."""
    def pad(tokens, value):
        tokens = tokens[:seq_len]
        return tokens + [value] * (seq_len - len(tokens)), len(tokens)
    inputs, input_len = pad(context + completion, 0)
    target, _ = pad((context + completion)[1:], 0)
    mask, _ = pad([0.0] * (len(context) - 1) + [1.0] * (input_len - len(context)), 0.0)
    return inputs, target, mask


def random_examples(rng, n, longest=40):
    return [(rng.integers(1, 50257, rng.integers(1, longest)).tolist(),
             rng.integers(1, 50257, rng.integers(1, 20)).tolist())
            for _ in range(n)]


def test_one_example_by_hand():
    inputs, target, mask = batching.make_example([10, 11, 12], [20, 21], seq_len=8)
    assert inputs.tolist() == [10, 11, 12, 20, 21]
    assert target.tolist() == [11, 12, 20, 21]  # target[j] = input[j + 1]
    assert mask.tolist() == [0, 0, 1, 1, 0]  # positions 2 and 3 predict the completion tokens 20 and 21
    # truncated to 4: the last kept position predicts 21, outside the kept input -> not in the loss
    inputs, target, mask = batching.make_example([10, 11, 12], [20, 21], seq_len=4)
    assert (inputs.tolist(), target.tolist(), mask.tolist()) == ([10, 11, 12, 20], [11, 12, 20, 21], [0, 0, 1, 0])
    inputs, target, mask = batching.make_example([1, 2, 3, 4, 5, 6], [7], seq_len=4)
    assert (inputs.tolist(), target.tolist(), mask.tolist()) == ([1, 2, 3, 4], [2, 3, 4, 5], [0, 0, 0, 0])


def test_fixed_length_batches_equal_the_reference_rows():
    rng = np.random.default_rng(0)
    examples = random_examples(rng, 30)
    batch = batching.collate(examples, np.arange(30), seq_len=32, fixed_length=True)
    assert batch.input.shape == (30, 32) and batch.input.dtype == np.int64 and batch.target.dtype == np.int64
    assert batch.mask.dtype == np.float32
    for row, (context, completion) in enumerate(examples):
        inputs, target, mask = reference_item(context, completion, 32)
        assert batch.input[row].tolist() == inputs
        assert batch.target[row].tolist() == target
        assert batch.mask[row].tolist() == mask
    assert batch.n_real_tokens == sum(min(len(c) + len(d), 32) for c, d in examples)


def test_dynamic_padding_rounds_up_to_a_multiple_and_caps_at_seq_len():
    examples = [([1] * 5, [2] * 4), ([1] * 3, [2])]  # lengths 9 and 4
    batch = batching.collate(examples, [0, 1], seq_len=64)
    assert batch.input.shape == (2, 16) and batch.lengths.tolist() == [9, 4] and batch.n_real_tokens == 13
    assert batch.input[1].tolist() == [1, 1, 1, 2] + [0] * 12 and batch.mask[1].tolist() == [0, 0, 1] + [0] * 13
    assert batching.collate(examples, [1], seq_len=64).input.shape == (1, 8)
    assert batching.collate(examples, [0], seq_len=12).input.shape == (1, 12)  # 16 capped at seq_len
    assert batching.collate(examples, [1], seq_len=64, pad_multiple=1).input.shape == (1, 4)
    # the same rows as fixed-length padding, cut to the batch width
    fixed = batching.collate(examples, [0, 1], seq_len=64, fixed_length=True)
    assert np.array_equal(fixed.input[:, :16], batch.input) and not fixed.input[:, 16:].any()
    assert np.array_equal(fixed.mask[:, :16], batch.mask) and not fixed.mask[:, 16:].any()


def test_epochs_cover_every_example_fill_the_last_batch_and_are_reproducible():
    examples = random_examples(np.random.default_rng(1), 23)
    batches = batching.TrainBatches(examples, batch_size=5, seq_len=16, seed=110)
    assert len(batches) == 5
    order = batches.order(1)
    assert len(order) == 25 and set(order.tolist()) == set(range(23))  # 2 filler slots repeat examples
    assert np.array_equal(order, batching.TrainBatches(examples, 5, 16, seed=110).order(1))
    assert not np.array_equal(order, batches.order(2))
    assert not np.array_equal(order, batching.TrainBatches(examples, 5, 16, seed=111).order(1))
    epoch = list(batches.epoch(1))
    assert [b.ids.tolist() for b in epoch] == [order[k * 5:(k + 1) * 5].tolist() for k in range(5)]
    assert all(b.input.shape[0] == 5 for b in epoch)
    assert batches.n_truncated == sum(len(c) + len(d) > 16 for c, d in examples) > 0


def test_resuming_at_batch_k_gives_the_rest_of_the_epoch():
    examples = random_examples(np.random.default_rng(2), 40)
    batches = batching.TrainBatches(examples, batch_size=4, seq_len=64, seed=7)
    full, resumed = list(batches.epoch(3)), list(batches.epoch(3, start_batch=6))
    assert len(resumed) == len(full) - 6
    for a, b in zip(full[6:], resumed):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.input, b.input) and np.array_equal(a.mask, b.mask)


def test_no_filler_when_batches_divide_evenly():
    batches = batching.TrainBatches([([1], [2])] * 8, batch_size=4, seq_len=8, seed=0)
    assert sorted(batches.order(1).tolist()) == list(range(8))


def test_eval_batches_run_in_file_order_without_filling():
    examples = random_examples(np.random.default_rng(3), 10)
    batches = list(batching.eval_batches(examples, batch_size=4, seq_len=64))
    assert [b.ids.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_query_batches_keep_the_last_context_tokens():
    contexts = [list(range(1, 11)), [5, 6], [7, 8, 9]]
    batch = next(batching.query_batches(contexts, batch_size=3, seq_len=12, eval_len=4))  # room for 8 tokens
    assert [c.tolist() for c in batch.contexts] == [list(range(3, 11)), [5, 6], [7, 8, 9]]
    assert batch.lengths.tolist() == [8, 2, 3] and batch.ids.tolist() == [0, 1, 2]
    assert batch.contexts[1].tolist() + [0] * (batch.lengths.max() - batch.lengths[1]) == [5, 6, 0, 0, 0, 0, 0, 0]
    assert batch.left_padded(pad_id=EOS_ID).tolist()[2] == [EOS_ID] * 5 + [7, 8, 9]
    second = list(batching.query_batches(contexts, batch_size=2, seq_len=12, eval_len=4))[1]
    assert second.ids.tolist() == [2]
    with pytest.raises(ValueError, match="eval_len"):
        batching.query_context([1], seq_len=4, eval_len=4)


def test_unique_contexts_in_order_of_first_appearance():
    examples = [([1, 2], [9]), ([3], [8]), ([1, 2], [7]), ([3], [6]), ([4], [5])]
    contexts, rows = batching.unique_contexts(examples)
    assert contexts == [[1, 2], [3], [4]] and rows == [[0, 2], [1, 3], [4]]


def test_load_encoded_reads_what_prepare_writes(tmp_path):
    write_jsonl(tmp_path / "x.jsonl", [{"context": [3, EOS_ID], "completion": [4, 5, EOS_ID]}])
    assert batching.load_encoded(str(tmp_path / "x.jsonl")) == [([3, EOS_ID], [4, 5, EOS_ID])]
    with pytest.raises(NLGError, match="missing.jsonl: cannot read"):
        batching.load_encoded(str(tmp_path / "missing.jsonl"))
