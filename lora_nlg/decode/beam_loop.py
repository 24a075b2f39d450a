"""The decode loop of gpt2_beam.py, once for both trees: each UNIQUE input decoded once, one prediction file.

The reference decodes every test row (~7 per E2E input); here `id` in the prediction jsonl is the
index of the unique input in order of first appearance, which gpt2_decode.py maps back to the rows.
"""
import os
import time

from tqdm import tqdm

from lora_nlg.data.batching import load_encoded, query_batches, unique_contexts
from lora_nlg.decode.beam_model import load_decoding_model
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import write_jsonl
from lora_nlg.util.work_dir import locked_work_dir


def run(args, settings, start_decoder):
    """Decode each unique input of --data once; write the prediction jsonl into --work_dir.

    `args`: the parsed flags; `settings`: their BeamSettings; `start_decoder(decoding)` builds the tree's
    model from a DecodingModel and returns decode_batch(QueryBatch) -> [ids per input]. Everything that
    can fail on bad input (the output folder and its lock, the weights, the data and its token ids) is
    checked before the first input is decoded, so no decoding work is lost to it.

    The prediction file gets `{"id": i, "predict": ids}` for unique input i (order of first appearance);
    `predict` ends with the EOS id that finished the hypothesis, if one did.
    """
    with locked_work_dir(args.work_dir):
        decoding = load_decoding_model(args, settings)
        examples = load_encoded(args.data, decoding.config.vocab_size)
        if not examples:
            raise NLGError(f"{args.data}: no examples")
        return decode_all(args, settings, start_decoder(decoding), examples)


def decode_all(args, settings, decode_batch, examples):
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
