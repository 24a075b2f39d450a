"""The decode loop of gpt2_beam.py, once for both trees: each UNIQUE input decoded once, one prediction file.

The reference decodes every test row (~7 per E2E input); here `id` in the prediction jsonl is the
index of the unique input in order of first appearance, which gpt2_decode.py maps back to the rows.

Under a launcher (torchrun, mpirun: lora_nlg.util.ranks) each rank decodes a contiguous block of the unique
inputs and rank 0 writes the one prediction file, in input order: byte-identical to one process's (beam search
gives each input the same result in any batch, tests/NLG_*/test_beam.py).
"""
import contextlib
import os
import time

import numpy as np
from tqdm import tqdm

from lora_nlg.data.batching import load_encoded, query_batches, unique_contexts
from lora_nlg.decode.beam_model import load_decoding_model
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import write_jsonl
from lora_nlg.util.ranks import block, from_environment
from lora_nlg.util.work_dir import locked_work_dir


def run(args, settings, start_decoder):
    """Decode each unique input of --data once; write the prediction jsonl into --work_dir.

    `args`: the parsed flags; `settings`: their BeamSettings; `start_decoder(decoding, ranks)` builds the tree's
    model from a DecodingModel on this rank's device and returns (decode_batch(QueryBatch) -> [ids per input],
    the tree's distributed.Collective). Everything that
    can fail on bad input (the output folder and its lock, the weights, the data and its token ids) is
    checked before the first input is decoded, so no decoding work is lost to it.

    The prediction file gets `{"id": i, "predict": ids}` for unique input i (order of first appearance);
    `predict` ends with the EOS id that finished the hypothesis, if one did.
    """
    ranks = from_environment(local_rank_flag=args.local_rank)
    with locked_work_dir(args.work_dir) if ranks.is_main else contextlib.nullcontext():  # rank 0: the one writer
        decoding = load_decoding_model(args, settings)
        examples = load_encoded(args.data, decoding.config.vocab_size)
        if not examples:
            raise NLGError(f"{args.data}: no examples")
        decode_batch, collective = start_decoder(decoding, ranks)
        try:
            return decode_all(args, settings, decode_batch, examples, ranks, collective)
        finally:
            collective.close()


def decode_all(args, settings, decode_batch, examples, ranks, collective):
    contexts, _ = unique_contexts(examples)
    mine = block(len(contexts), ranks)
    say = print if ranks.is_main else (lambda *_: None)
    say(f"{len(contexts)} unique inputs ({len(examples)} rows) in {args.data}"
        + (f"; {ranks.size} processes, {len(mine)} on rank 0" if ranks.size > 1 else ""))
    predictions = []
    start = time.perf_counter()
    with tqdm(total=len(mine), unit="input", dynamic_ncols=True, leave=False, disable=not ranks.is_main) as progress:
        for batch in query_batches(contexts[mine.start:mine.stop], args.batch_size, args.seq_len, settings.eval_len):
            predictions += decode_batch(batch)
            progress.update(len(batch.ids))
    predictions = gather_predictions(predictions, mine, len(contexts), settings.eval_len, ranks, collective)
    seconds = time.perf_counter() - start
    if not ranks.is_main:
        return predictions
    path = os.path.join(args.work_dir, args.output_file)
    write_jsonl(path, ({"id": i, "predict": ids} for i, ids in enumerate(predictions)))
    say(f"decoded {len(contexts)} inputs in {seconds:.1f}s: {len(contexts) / seconds:.2f} examples/s "
        f"(batch {args.batch_size}, beam {settings.beam})")
    say(f"saved predictions to {path}")
    return predictions


def gather_predictions(predictions, mine, n, eval_len, ranks, collective):
    """Every rank's predictions, in input order, on every rank: this rank's (for the inputs in range `mine`) go
    into a zero table [n, 1 + eval_len] (length, then ids; ids < 2^53 are exact in float64), and the ranks'
    tables are summed (each row is filled by one rank only)."""
    if ranks.size == 1:
        return predictions
    table = np.zeros((n, 1 + eval_len))
    for row, ids in zip(mine, predictions):
        if len(ids) > eval_len:
            raise ValueError(f"a prediction of {len(ids)} tokens is longer than --eval_len {eval_len}")
        table[row, 0] = len(ids)
        table[row, 1:1 + len(ids)] = ids
    table = collective.sum_array(table)
    return [[int(token) for token in table[row, 1:1 + int(table[row, 0])]] for row in range(n)]
