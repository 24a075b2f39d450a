"""Batched beam search with a LoRA GPT-2 (merged for speed): each unique test input decoded once.

    cd NLG_jittor && python src/gpt2_beam.py --data ../data/e2e/sampled_18pct/test.jsonl \
        --init_checkpoint ../pretrained_checkpoints/gpt2-medium.safetensors \
        --lora_checkpoint ../trained_models/e2e/model.26290 --batch_size 16 --seq_len 512 --eval_len 64 \
        --beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4 --repetition_penalty 1.0 --eos_token_id 628 \
        --work_dir ../trained_models/e2e --output_file predict.26290.jsonl

Computes what microsoft/LoRA's gpt2_beam.py computes (rules: lora_nlg/decode/beam.py; flags:
lora_nlg/decode/beam_cli.py), faster: examples are batched with LEFT padding (so every row's next token
sits in the last column) on top of the beams, the prompt runs once per example instead of once per
beam, logits are computed for the last position only, and examples leave the batch as soon as their
result is final. This file only runs the model and picks the top-k candidates; the bookkeeping is
lora_nlg.decode.beam.BeamBook, shared by both trees. The key/value cache is the (k, v) pairs each step
concatenates to and gathers in beam order (`beam_search(..., cache="preallocated")`: a model.KVCache, the same
bits, but no faster in Jittor: see beam_search).

The Jittor mirror of NLG_pytorch/src/gpt2_beam.py, line for line but inside `top_candidates` (jt.topk
sorts whole rows), the model's log_softmax (sums in float64), and on the CPU the candidates' top k taken by
one C++ kernel (cpu_kernels.beam_top_k) instead of built and sorted. Jittor compiles its kernels per operator
graph and dtype, not per input size (a new rank or a dimension of size 1 can still add kernels), so the
growing cache and the shrinking batch reuse the kernels of the first steps; a first run on an empty
kernel cache compiles them once (about a minute here), later runs load them from disk.
"""
import cpu_kernels
import numpy as np

from distributed import Collective
from jittor_env import jt
from lora import merge_lora
from lora_nlg.decode.beam import BeamBook
from lora_nlg.decode.beam_cli import beam_settings, parse_args
from lora_nlg.decode.beam_loop import run
from lora_nlg.util.errors import run_cli
from model import GPT2LMModel, KVCache, log_softmax, pick_device, set_matmul_precision

CACHES = ("preallocated", "concat")  # beam_search's cache
TOPK_GROUP = 256  # top_candidates' group size


def build_model(decoding, device, attention="auto"):
    """GPT2LMModel holding the decoding weights, LoRA merged into the base (one matmul per projection),
    on `device` (pick_device's answer: Jittor's one global device, already switched there); `attention` as
    GPT2LMModel's."""
    model = GPT2LMModel(decoding.config, decoding.lora, attention)
    model.load_weights(decoding.weights)
    merge_lora(model)
    return model.eval()


def as_tensor(array, device=None):
    return jt.array(array)  # on Jittor's global device (pick_device): no `device` to move to


def penalize(logits, book, repetition_penalty):
    """The reference's order: repetition penalty on the raw logits, then -inf on banned tokens."""
    if repetition_penalty != 1.0 and book.length:  # (no pairs before the first token)
        rows, tokens = (as_tensor(a) for a in book.repeated_pairs())
        seen = logits[rows, tokens]
        logits[rows, tokens] = jt.where(seen < 0, seen * repetition_penalty, seen / repetition_penalty)
    rows, tokens = book.banned_pairs()
    if len(rows):  # (none in the first steps)
        logits[as_tensor(rows), as_tensor(tokens)] = float("-inf")
    return logits


def top_candidates(candidates, k):
    """Values and indices (numpy, [rows, k], values descending) of the k largest entries of each row.

    jt.topk argsorts whole rows: ~40 ms for one example's 10 x 50257 candidates on a CPU (torch.topk:
    ~0.5 ms). An entry of the top k lies in a group (of TOPK_GROUP entries) whose maximum is among the k
    largest group maxima, so only those k groups are sorted (~0.5-1 ms). The row is padded with -inf to
    whole groups; if a row has fewer than k finite candidates a pad could be picked, so jt.topk decides.
    """
    group = TOPK_GROUP
    rows, n = candidates.shape
    n_groups = -(-n // group)
    padded = candidates
    if n_groups * group > n:
        padded = jt.concat([candidates, jt.full((rows, n_groups * group - n), float("-inf"))], dim=1)
    groups = padded.reshape(rows, n_groups, group)
    _, best = jt.topk(groups.max(dim=2), min(k, n_groups), dim=1)
    values, within = jt.topk(groups[jt.arange(rows)[:, None], best].reshape(rows, -1), k, dim=1)
    indices = best.gather(1, within // group) * group + within % group
    values, indices = values.numpy(), indices.numpy()
    if not np.isfinite(values[:, -1]).all():
        values, indices = (a.numpy() for a in jt.topk(candidates, k, dim=1))
    return values, indices


def reorder(past, left_pad, parents, device=None):
    """The cache and left padding of the hypotheses still decoding: row i is row parents[i] (numpy) before.
    A KVCache moves its rows in place, and not at all when each row stays (beam 1 while no example left)."""
    if isinstance(past, KVCache) and len(parents) == past.rows and (parents == np.arange(len(parents))).all():
        return past, left_pad
    parents = as_tensor(parents)
    if isinstance(past, KVCache):
        past.reorder(parents)
        return past, left_pad[parents]
    return [(k[parents], v[parents]) for k, v in past], left_pad[parents]


@jt.no_grad()
def beam_search(model, batch, settings, cache="concat"):
    """Generated ids of each input of a lora_nlg.data.batching.QueryBatch (beam 1: greedy decoding).
    cache: "preallocated" (a KVCache for every row the batch can have, written with setitem, rows gathered) or
    "concat" (the reference path: (k, v) pairs, concatenated each step and gathered in beam order).
    The default is "concat" here: Jittor's caching allocator makes concat's new Vars cheap, and a KVCache,
    the same bits, measured ~5-10% slower on CPU (gathering whole buffers; setitem-reordering them: ~1.7x)."""
    if cache not in CACHES:
        raise ValueError(f"cache={cache!r}: use one of {', '.join(CACHES)}")
    book = BeamBook(settings, len(batch.ids), model.config.vocab_size)
    tokens = as_tensor(batch.left_padded())
    left_pad = tokens.shape[1] - as_tensor(batch.lengths)
    past = None
    if cache == "preallocated":  # slots: the padded prompt, then each generated token but the last (never fed)
        past = KVCache(len(batch.ids) * settings.beam, tokens.shape[1] + settings.eval_len - 1)
    while True:
        hidden, past = model(tokens, past=past, left_pad=left_pad)
        logits = penalize(model.logits(hidden[:, -1]), book, settings.repetition_penalty)
        logprobs = log_softmax(logits)
        scores = as_tensor(book.scores)  # [examples, rows per example]
        found = cpu_kernels.beam_top_k(scores, logprobs, settings.beam) if cpu_kernels.available(logprobs) else None
        if found is None:
            candidates = (scores[:, :, None] + logprobs.reshape(*scores.shape, -1)).reshape(scores.shape[0], -1)
            found = top_candidates(candidates, settings.beam)
        values, indices = found
        parents = book.advance(values, indices)
        if book.finished:
            return book.predictions()
        past, left_pad = reorder(past, left_pad, parents)
        tokens = as_tensor(book.last_tokens())[:, None]


def main(argv=None):
    args = parse_args(argv, framework="jittor")
    settings = beam_settings(args)

    def start_decoder(decoding, ranks):
        device = pick_device(args.device, ranks)
        matmul = set_matmul_precision(device, args.exact)
        model = build_model(decoding, device, "reference" if args.exact else "auto")
        if ranks.is_main:
            print(f"model: {decoding.description}; device {device}; matmul precision: {matmul}")
        return (lambda batch: beam_search(model, batch, settings)), Collective(ranks, device)

    return run(args, settings, start_decoder)


if __name__ == "__main__":
    run_cli(main)
