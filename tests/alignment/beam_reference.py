"""microsoft/LoRA's beam search written out plainly, for tests of both trees' batched search.

One example at a time, no key/value cache, Python lists, every one of the reference's rules in the
order its gpt2_beam.py applies them, and all `eval_len` steps (no early stop). It is slow on purpose
and shares no code with lora_nlg.decode.beam, so agreement between the two means something.
"""
import math

import numpy as np


def log_softmax(logits):
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum(dtype=np.float32))


def reference_beam_search(next_logits, prompt, settings):
    """Generated ids for one prompt.

    next_logits(sequences) -> float32 logits [len(sequences), vocab] of the token after each sequence
    (a list of equally long id lists: the prompt plus each beam's tokens, recomputed from scratch).
    """
    s = settings
    beams = [([], np.float32(0.0))]  # (generated ids, cumulative log-prob; -inf once finished)
    best_score, best_tokens = None, None
    for step in range(s.eval_len):
        candidates = []
        all_logits = np.array(next_logits([list(prompt) + tokens for tokens, _ in beams]), dtype=np.float32)
        for beam_index, (tokens, score) in enumerate(beams):
            logits = all_logits[beam_index]
            if s.repetition_penalty != 1.0:
                for token in set(tokens):
                    if logits[token] < 0:
                        logits[token] *= np.float32(s.repetition_penalty)
                    else:
                        logits[token] /= np.float32(s.repetition_penalty)
            if step < s.min_length:
                logits[list(s.eos_ids)] = -np.inf
            n = s.no_repeat_ngram_size
            if n > 0 and step + 1 >= n:
                following = {}
                for start in range(len(tokens) - n + 1):
                    following.setdefault(tuple(tokens[start:start + n - 1]), []).append(tokens[start + n - 1])
                logits[following.get(tuple(tokens[len(tokens) - n + 1:]), [])] = -np.inf
            logprobs = log_softmax(logits)
            candidates += [(score + logprobs[token], beam_index, token) for token in range(len(logits))]
        candidates.sort(key=lambda c: -c[0])  # stable: ties keep beam, then token order
        beams = [(beams[b][0] + [token], value) for value, b, token in candidates[:s.beam]]
        for index, (tokens, score) in enumerate(beams):
            if tokens[-1] in s.eos_ids:
                normalized = float(score) / math.pow(len(tokens), s.length_penalty)
                if best_score is None or best_score < normalized:
                    best_score, best_tokens = normalized, tokens
                beams[index] = (tokens, np.float32(-np.inf))
    for tokens, score in beams:
        normalized = float(score) / math.pow(len(tokens), s.length_penalty)
        if best_score is None or best_score < normalized:
            best_score, best_tokens = normalized, tokens
    return best_tokens
