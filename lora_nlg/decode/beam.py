"""The framework-free half of batched beam search: settings, bans, hypotheses, and when to stop.

A framework's `gpt2_beam.py` runs the model and picks candidates (logits -> repetition penalty ->
bans -> log-softmax -> top-k over beam x vocabulary); `BeamBook` does the rest in numpy, so both
trees share it line for line. Per step the framework asks the book which (row, token) pairs to
penalise and to ban, hands it the top-k values and indices, and reorders its key/value cache with
the parent rows the book returns.

The rules are microsoft/LoRA's gpt2_beam.py (checked against its source):
- a hypothesis' score is the sum of its tokens' log-probabilities; the first step expands the
  prompt alone (the reference reads beam 0 of identical copies);
- repetition penalty (CTRL) on the raw logits of tokens this hypothesis already GENERATED (not the
  prompt): a negative logit is multiplied by the penalty, another one divided by it;
- no-repeat-ngram: a token that would complete an n-gram already in the generated tokens is banned
  (prompt excluded); EOS is banned while fewer than `min_length` tokens were generated;
- a hypothesis whose last token is an EOS id is finished: it is offered as a result with score
  `score / length ** length_penalty` (length counts the EOS) and leaves the beam (its slot is refilled
  from the live hypotheses' continuations); after `eval_len` tokens every live hypothesis is offered
  the same way; an offer replaces the example's result only if strictly better, in beam order.
Beyond the reference (same outputs): an example stops as soon as no live hypothesis can ever beat its
result (see `_settled`), and examples that stopped leave the batch.
"""
from dataclasses import dataclass

import numpy as np

from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.util.errors import NLGError


class BeamError(NLGError):
    """Beam-search settings that cannot work (the message names the flag)."""


@dataclass(frozen=True)
class BeamSettings:
    beam: int
    eval_len: int
    min_length: int = 0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 4
    repetition_penalty: float = 1.0
    eos_ids: tuple = (EOS_ID,)

    def __post_init__(self):
        object.__setattr__(self, "eos_ids", tuple(dict.fromkeys(int(i) for i in self.eos_ids)))
        problems = [
            (self.beam < 1, f"--beam {self.beam}: must be >= 1"),
            (self.eval_len < 1, f"--eval_len {self.eval_len}: must be >= 1"),
            (self.min_length < 0, f"--min_length {self.min_length}: must be >= 0"),
            (self.no_repeat_ngram_size < 0, f"--no_repeat_ngram_size {self.no_repeat_ngram_size}: must be >= 0"),
            (not self.repetition_penalty > 0, f"--repetition_penalty {self.repetition_penalty}: must be > 0"),
            (not self.eos_ids or min(self.eos_ids) < 0, f"--eos_token_id {list(self.eos_ids)}: need ids >= 0"),
        ]
        for bad, message in problems:
            if bad:
                raise BeamError(message)

    def check_vocabulary(self, vocab_size):
        if self.beam > vocab_size:
            raise BeamError(f"--beam {self.beam}: larger than the vocabulary ({vocab_size})")
        if max(self.eos_ids) >= vocab_size:
            raise BeamError(f"--eos_token_id {max(self.eos_ids)}: not in the vocabulary of {vocab_size} tokens")


def length_denominators(eval_len, length_penalty):
    """d[L] = L ** length_penalty for L = 0..eval_len (d[0] unused), and f[L] = max(d[L+1:]) (f[eval_len] unused)."""
    d = np.ones(eval_len + 1)
    d[1:] = np.arange(1, eval_len + 1, dtype=np.float64) ** length_penalty
    future = np.ones(eval_len + 1)
    future[:-1] = np.maximum.accumulate(d[:0:-1])[::-1]
    return d, future


class BeamBook:
    """Hypotheses of one batch of examples, in numpy; the model runs R rows for each active example.

    State: `examples` (batch positions still decoding), `scores` [A, R] cumulative log-probs (-inf:
    finished), `history` [A, R, length] generated tokens; for each example its best finished result.
    Before the first step R = 1 (the prompt); after it R = beam.
    """

    def __init__(self, settings, n_examples, vocab_size):
        settings.check_vocabulary(vocab_size)
        self.settings, self.vocab_size = settings, vocab_size
        self.eos_ids = np.array(settings.eos_ids, dtype=np.int64)
        self.denominators, self.future_denominators = length_denominators(settings.eval_len, settings.length_penalty)
        self.examples = np.arange(n_examples)
        self.scores = np.zeros((n_examples, 1), np.float32)
        self.history = np.zeros((n_examples, 1, 0), np.int64)
        self.best_score = np.full(n_examples, -np.inf)
        self.has_best = np.zeros(n_examples, bool)
        self.best_tokens = [None] * n_examples

    @property
    def length(self):
        """Tokens generated so far (the step about to run is number `length`, from 0)."""
        return self.history.shape[2]

    @property
    def finished(self):
        return len(self.examples) == 0

    def _rows(self):
        return self.history.reshape(self.scores.size, self.length)

    def repeated_pairs(self):
        """(rows, tokens): each distinct token each row has generated, for the repetition penalty."""
        rows = np.repeat(np.arange(self._rows().shape[0]), self.length)
        keys = np.unique(rows * self.vocab_size + self._rows().reshape(-1))
        return keys // self.vocab_size, keys % self.vocab_size

    def banned_pairs(self):
        """(rows, tokens) whose logit must become -inf this step: n-gram repeats, and EOS before min_length.

        Row r bans token h[j + n - 1] for every start j whose (n-1)-gram h[j : j + n - 1] equals the
        row's last n - 1 tokens (n = 1: every generated token). Pairs may repeat.
        """
        history, n, length = self._rows(), self.settings.no_repeat_ngram_size, self.length
        rows, tokens = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        n_windows = length - n + 1
        if n > 0 and n_windows > 0:
            match = np.ones((history.shape[0], n_windows), bool)
            for k in range(n - 1):
                match &= history[:, k:k + n_windows] == history[:, n_windows + k:n_windows + k + 1]
            row, start = np.nonzero(match)
            rows.append(row)
            tokens.append(history[row, start + n - 1])
        if length < self.settings.min_length:
            rows.append(np.repeat(np.arange(history.shape[0]), len(self.eos_ids)))
            tokens.append(np.tile(self.eos_ids, history.shape[0]))
        return np.concatenate(rows), np.concatenate(tokens)

    def advance(self, values, indices):
        """Take the step's top-k: values/indices [A, beam] over each example's R x vocab candidates.

        Returns the parent row of every hypothesis still decoding (reorder the cache and the left padding
        with it); the next input token of each is `last_tokens()`.
        """
        n_active, per_example = self.scores.shape
        parents = np.arange(n_active)[:, None] * per_example + indices // self.vocab_size
        tokens = indices % self.vocab_size
        self.history = np.concatenate([self._rows()[parents], tokens[:, :, None]], axis=2)
        self.scores = np.asarray(values, dtype=np.float32).copy()
        ended = np.isin(tokens, self.eos_ids)
        self._offer(np.where(ended, self.scores, -np.inf), ended.any(axis=1))
        self.scores[ended] = -np.inf
        if self.length == self.settings.eval_len:
            self._offer(self.scores, np.ones(n_active, bool))
            keep = np.zeros(n_active, bool)
        else:
            keep = ~self._settled()
        self.examples, self.scores, self.history = self.examples[keep], self.scores[keep], self.history[keep]
        return parents[keep].reshape(-1)

    def last_tokens(self):
        return self.history[:, :, -1].reshape(-1)

    def _offer(self, scores, eligible):
        """Offer each example its best candidate (first in beam order on ties); keep it if strictly better."""
        normalized = scores.astype(np.float64) / self.denominators[self.length]
        pick = normalized.argmax(axis=1)
        value = normalized[np.arange(len(pick)), pick]
        better = eligible & ((value > self.best_score[self.examples]) | ~self.has_best[self.examples])
        for row in np.nonzero(better)[0]:
            example = self.examples[row]
            self.best_score[example], self.has_best[example] = value[row], True
            self.best_tokens[example] = self.history[row, pick[row]].copy()

    def _settled(self):
        """Examples whose result no live hypothesis can beat any more.

        A live score s <= 0 can only decrease (every step adds a log-probability <= 0), so any later
        offer is at most s / d[L] <= s / max(d[L] for L in length+1..eval_len): rounding is monotone,
        so this bound holds exactly in floating point and stopping never changes an output.
        """
        bound = self.scores.max(axis=1).astype(np.float64) / self.future_denominators[self.length]
        return self.has_best[self.examples] & (bound <= self.best_score[self.examples])

    def predictions(self):
        """Generated token ids of each example's result (ending with its EOS id if it finished)."""
        return [tokens.tolist() for tokens in self.best_tokens]
