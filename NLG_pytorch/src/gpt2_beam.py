"""Batched beam search with a LoRA GPT-2 (merged for speed): each unique test input decoded once.

    cd NLG_pytorch && python src/gpt2_beam.py --data ../data/e2e/sampled_18pct/test.jsonl \
        --init_checkpoint ../pretrained_checkpoints/gpt2-medium.safetensors \
        --lora_checkpoint ../trained_models/e2e/model.26290 --batch_size 16 --seq_len 512 --eval_len 64 \
        --beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4 --repetition_penalty 1.0 --eos_token_id 628 \
        --work_dir ../trained_models/e2e --output_file predict.26290.jsonl

Computes what microsoft/LoRA's gpt2_beam.py computes (rules: lora_nlg/decode/beam.py; flags:
lora_nlg/decode/beam_cli.py), faster: examples are batched with LEFT padding (so every row's next token
sits in the last column) on top of the beams, the prompt runs once per example instead of once per
beam, logits are computed for the last position only, and examples leave the batch as soon as their
result is final. This file only runs the model and picks the top-k candidates; the bookkeeping is
lora_nlg.decode.beam.BeamBook, shared by both trees. The key/value cache is a model.KVCache, preallocated
for the batch and reordered in place (`beam_search(..., cache="concat")`: the (k, v) pairs each step
concatenates to and gathers in beam order, the reference path; both give the same bits).
"""
import numpy as np
import torch

from distributed import Collective
from lora import merge_lora
from lora_nlg.decode.beam import BeamBook
from lora_nlg.decode.beam_cli import beam_settings, parse_args
from lora_nlg.decode.beam_loop import run
from lora_nlg.util.errors import run_cli
from model import GPT2LMModel, KVCache, log_softmax, pick_device, set_matmul_precision

CACHES = ("preallocated", "concat")  # beam_search's cache


def build_model(decoding, device, attention="auto"):
    """GPT2LMModel holding the decoding weights, LoRA merged into the base (one matmul per projection),
    on `device` (pick_device's answer); `attention` as GPT2LMModel's."""
    model = GPT2LMModel(decoding.config, decoding.lora, attention)
    model.load_weights(decoding.weights)
    merge_lora(model)
    return model.to(device).eval()


def as_tensor(array, device):
    return torch.from_numpy(array).to(device)


def penalize(logits, book, repetition_penalty):
    """The reference's order: repetition penalty on the raw logits, then -inf on banned tokens."""
    if repetition_penalty != 1.0 and book.length:  # (no pairs before the first token)
        rows, tokens = (as_tensor(a, logits.device) for a in book.repeated_pairs())
        seen = logits[rows, tokens]
        logits[rows, tokens] = torch.where(seen < 0, seen * repetition_penalty, seen / repetition_penalty)
    rows, tokens = book.banned_pairs()
    if len(rows):  # (none in the first steps)
        logits[as_tensor(rows, logits.device), as_tensor(tokens, logits.device)] = float("-inf")
    return logits


def top_candidates(candidates, k):
    """Values and indices (numpy, [rows, k], values descending) of the k largest entries of each row."""
    values, indices = torch.topk(candidates, k, dim=1)
    return values.cpu().numpy(), indices.cpu().numpy()


def reorder(past, left_pad, parents, device):
    """The cache and left padding of the hypotheses still decoding: row i is row parents[i] (numpy) before.
    A KVCache moves its rows in place, and not at all when each row stays (beam 1 while no example left)."""
    if isinstance(past, KVCache) and len(parents) == past.rows and (parents == np.arange(len(parents))).all():
        return past, left_pad
    parents = as_tensor(parents, device)
    if isinstance(past, KVCache):
        past.reorder(parents)
        return past, left_pad[parents]
    return [(k[parents], v[parents]) for k, v in past], left_pad[parents]


@torch.no_grad()
def beam_search(model, batch, settings, cache="preallocated"):
    """Generated ids of each input of a lora_nlg.data.batching.QueryBatch (beam 1: greedy decoding).
    cache: "preallocated" (a KVCache for every row the batch can have, written and reordered in place) or
    "concat" (the reference path: (k, v) pairs, concatenated each step and gathered in beam order)."""
    if cache not in CACHES:
        raise ValueError(f"cache={cache!r}: use one of {', '.join(CACHES)}")
    device = model.wte.weight.device
    book = BeamBook(settings, len(batch.ids), model.config.vocab_size)
    tokens = as_tensor(batch.left_padded(), device)
    left_pad = tokens.shape[1] - as_tensor(batch.lengths, device)
    past = None
    if cache == "preallocated":  # slots: the padded prompt, then each generated token but the last (never fed)
        past = KVCache(len(batch.ids) * settings.beam, tokens.shape[1] + settings.eval_len - 1)
    while True:
        hidden, past = model(tokens, past=past, left_pad=left_pad)
        logits = penalize(model.logits(hidden[:, -1]), book, settings.repetition_penalty)
        logprobs = log_softmax(logits)
        scores = as_tensor(book.scores, device)  # [examples, rows per example]
        candidates = (scores[:, :, None] + logprobs.reshape(*scores.shape, -1)).reshape(scores.shape[0], -1)
        values, indices = top_candidates(candidates, settings.beam)
        parents = book.advance(values, indices)
        if book.finished:
            return book.predictions()
        past, left_pad = reorder(past, left_pad, parents, device)
        tokens = as_tensor(book.last_tokens(), device)[:, None]


def main(argv=None):
    args = parse_args(argv, framework="pytorch")
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
