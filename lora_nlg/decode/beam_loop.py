"""The decode loop of gpt2_beam.py, once for both trees: each UNIQUE input decoded once, one prediction file.

The reference decodes every test row (~7 per E2E input); here `id` in the prediction jsonl is the
index of the unique input in order of first appearance, which gpt2_decode.py maps back to the rows.
"""
import os
import time

from tqdm import tqdm

from lora_nlg.data.batching import load_encoded, query_batches, unique_contexts
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import write_jsonl


def run(args, settings, decode_batch):
    """Decode each unique input of --data once with decode_batch(QueryBatch) -> [ids per input]; write jsonl.

    `args`: the parsed flags (data, batching, output); `settings`: their BeamSettings (eval_len, beam).

    The prediction file gets `{"id": i, "predict": ids}` for unique input i (order of first appearance);
    `predict` ends with the EOS id that finished the hypothesis, if one did.
    """
    examples = load_encoded(args.data)
    if not examples:
        raise NLGError(f"{args.data}: no examples")
    contexts, _ = unique_contexts(examples)
    print(f"{len(contexts)} unique inputs ({len(examples)} rows) in {args.data}")
    predictions = []
    start = time.perf_counter()
    with tqdm(total=len(contexts), unit="input", dynamic_ncols=True, leave=False) as progress:
        for batch in query_batches(contexts, args.batch_size, args.seq_len, settings.eval_len):
            predictions += decode_batch(batch)
            progress.update(len(batch.ids))
    seconds = time.perf_counter() - start
    path = os.path.join(args.work_dir, args.output_file)
    write_jsonl(path, ({"id": i, "predict": ids} for i, ids in enumerate(predictions)))
    print(f"decoded {len(contexts)} inputs in {seconds:.1f}s: {len(contexts) / seconds:.2f} examples/s "
          f"(batch {args.batch_size}, beam {settings.beam})")
    print(f"saved predictions to {path}")
    return predictions
