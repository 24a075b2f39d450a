"""Fit SQuAD prompts into the model's window by cutting the PARAGRAPH, never the question or the frame.

Budgets, in GPT-2 ids with the EOS: a context gets at most seq_len - answer_tokens, room left for the
generated answer (beam search keeps only the last seq_len - eval_len context ids, so a longer prompt
would lose its beginning, "Context:" included); a training / validation example (context +
completion) at most seq_len, so batching never cuts its answer off.

The paragraph is cut at the whitespace between words and the prompt encoded again: the BPE of a cut
string is not a prefix of the full one, so only the re-encoded length counts. Windows of more words
contain those of fewer, so the word count is searched by bisection; only rows over budget are touched.
- train / valid: the window keeps the first gold answer and loses words from the end farther from it
  first, then from both ends in turn, so the model learns from text that holds its target.
- test: the gold answers must not steer the input (that would leak where they are), so the
  paragraph's beginning is kept; questions whose every gold answer falls beyond the cut are counted.
  data/prepare.py --test_window answer cuts test prompts like training ones instead (an oracle passage
  around the first gold answer, for models too small to search a whole paragraph; stated as such).
"""
import bisect
import re

from lora_nlg.data.format_converting import answer_span, squad_paragraph, squad_prompt
from lora_nlg.data.tokenizer import EOS_ID, encode_records
from lora_nlg.util.errors import NLGError

WORD = re.compile(r"\S+")
TEST_WINDOWS = ("beginning", "answer")


def fit_records(records, tokenizer, seq_len, answer_tokens, keep_answer, source):
    """(records with "truncated", their encoded rows, counts) for one split; `keep_answer`: True for
    train / valid, False for test; `source` names the raw file in errors."""
    counts = {"truncated": 0, "answer_start_mismatches": 0}
    if not keep_answer:
        counts["answers_cut_off"] = 0
    fitted, rows = [], []
    for record, ids in zip(records, encode_records(tokenizer, records)):
        budget = seq_len - answer_tokens
        if keep_answer:
            budget = min(budget, seq_len - len(ids["completion"]))
        truncated = len(ids["context"]) > budget
        if truncated:
            paragraph = squad_paragraph(record)
            words = [match.span() for match in WORD.finditer(paragraph)]
            spans = [answer_span(paragraph, answer) for answer in record["answers"][:1 if keep_answer else None]]
            counts["truncated"] += 1
            counts["answer_start_mismatches"] += sum(not exact for _, _, exact in spans)
            where = f"{source}: question {record['id']}"
            if keep_answer:
                context, ids["context"] = _around_answer(record, paragraph, words, spans[0], budget, tokenizer, where)
            else:
                end, context, ids["context"] = _beginning(record, paragraph, words, budget, tokenizer, where)
                counts["answers_cut_off"] += all(answer_end > end for _, answer_end, _ in spans)
            record = {**record, "context": context}
        fitted.append({**record, "truncated": truncated})
        rows.append(ids)
    return fitted, rows, counts


def _around_answer(record, paragraph, words, span, budget, tokenizer, where):
    """(context, ids) of the longest window around the answer span that fits the budget."""
    first = bisect.bisect_right([end for _, end in words], span[0])  # first word ending after the start
    last = bisect.bisect_left([start for start, _ in words], span[1]) - 1  # last word starting before the end
    before, after = first, len(words) - 1 - last

    def window(count):
        """`count` words besides the answer's, as evenly around it as the paragraph allows."""
        kept_before = min(before, max(count - after, (count + 1) // 2))
        return paragraph[words[first - kept_before][0]:words[last + count - kept_before][1]]

    return _longest_fitting(record, window, 0, before + after, budget, tokenizer, where)[1:]


def _beginning(record, paragraph, words, budget, tokenizer, where):
    """(end offset, context, ids) of the longest beginning of the paragraph that fits the budget."""
    count, context, ids = _longest_fitting(record, lambda n: paragraph[:words[n - 1][1]], 1, len(words),
                                           budget, tokenizer, where)
    return words[count - 1][1], context, ids


def _longest_fitting(record, window, smallest, largest, budget, tokenizer, where):
    """(count, context, ids) for the largest word count in [smallest, largest) whose prompt fits;
    `largest` (the whole paragraph) is known not to fit."""
    def encoded(count):
        context = squad_prompt(window(count), record["question"])
        return count, context, tokenizer.encode(context) + [EOS_ID]

    best = encoded(smallest)
    if len(best[2]) > budget:
        raise NLGError(f"{where}: its prompt needs {len(best[2])} context ids even with the paragraph cut to the "
                       f"least it can keep, over the budget of {budget}; raise --seq_len or lower --answer_tokens")
    fits, too_long = smallest, largest
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        candidate = encoded(middle)
        if len(candidate[2]) <= budget:
            fits, best = middle, candidate
        else:
            too_long = middle
    return best
