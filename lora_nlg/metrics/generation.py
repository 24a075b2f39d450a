"""The WebNLG / DART metrics exactly as WebNLG GenerationEval's `eval.py` computes them.

Files as GenerationEval reads them: `PREFIX0 ... PREFIX{N-1}` (or PREFIX itself when N = 1) and
the hypothesis file, UTF-8, split at '\\n' (so a final newline would add an empty instance: we
refuse such files instead of scoring it). Then, as eval.py:
- bleu: multi-bleu-detok on the raw lines (`multi_bleu`), and bleu_nltk: nltk's corpus_bleu with
  smoothing method 3 on the nltk tokens, inputs whose references are all empty left out;
- meteor: METEOR 1.5 `-norm` on the nltk-tokenised lines (`meteor`);
- chrf++: on the raw lines, empty references dropped, inputs without any left out (`chrf`);
- ter: on the nltk tokens, per input the best reference (an empty one scores 1), averaged (`ter`).
BERTScore and BLEURT need model downloads and are not offered.
"""
import sys

from lora_nlg.metrics import multi_bleu
from lora_nlg.metrics.chrf import chrf_plus_plus
from lora_nlg.metrics.meteor import meteor_score
from lora_nlg.metrics.nltk_tokenize import tokenized_line
from lora_nlg.metrics.ter import ter
from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import read_text

METRICS = ("bleu", "meteor", "chrf++", "ter")
UNAVAILABLE = ("bert", "bleurt")
# characters at which Python's codecs (GenerationEval's chrF++ reader) or Java (METEOR) also end a line
_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def reference_paths(prefix, num_refs):
    return [f"{prefix}{i}" for i in range(num_refs)] if num_refs > 1 else [prefix]


def read_lines(path):
    """Lines as GenerationEval reads them: split on '\n', so a final newline is one more, empty line."""
    lines = read_text(path).split("\n")
    for number, line in enumerate(lines, 1):
        odd = [c for c in line if c in _LINE_BREAKS]
        if odd:
            raise NLGError(f"{path}: line {number}: contains U+{ord(odd[0]):04X}, a line break for the "
                           "official chrF++ / METEOR readers that would misalign the files")
    return lines


def read_instances(reference_prefix, hypothesis_path, num_refs):
    """(references: num_refs strings per instance, hypotheses), line counts checked."""
    hypotheses = read_lines(hypothesis_path)
    columns = []
    for path in reference_paths(reference_prefix, num_refs):
        column = read_lines(path)
        if len(column) != len(hypotheses):
            raise NLGError(f"{path}: {len(column)} lines but {hypothesis_path} has {len(hypotheses)} (as in "
                           "GenerationEval, a final newline counts as one more, empty line)")
        columns.append(column)
    if not any(hypotheses) and not any(any(column) for column in columns):
        raise NLGError(f"{hypothesis_path}: no text to score (it and every reference file are empty)")
    return [list(group) for group in zip(*columns)], hypotheses


def check_metrics(names):
    for name in names:
        if name in UNAVAILABLE:
            raise NLGError(f"{name}: needs a model download, not available offline; choose from {', '.join(METRICS)}")
        if name not in METRICS:
            raise NLGError(f"{name}: unknown metric; choose from {', '.join(METRICS)}")


def generation_scores(references, hypotheses, metrics=METRICS):
    """{'bleu', 'bleu_nltk', 'meteor', 'chrf++', 'ter'} (those asked for), as GenerationEval's result dict."""
    check_metrics(metrics)
    num_refs = len(references[0])
    if hypotheses[-1] == "" and {"meteor", "chrf++"} & set(metrics):
        print("note: the last hypothesis is empty; GenerationEval itself would report METEOR -1 and leave "
              "it out of chrF++; scored here like any other empty hypothesis", file=sys.stderr)
    scores = {}
    if {"bleu", "meteor", "ter"} & set(metrics):
        references_tok, hypotheses_tok = _tokenized(references, hypotheses)
    if "bleu" in metrics:
        scores["bleu"] = multi_bleu.bleu(references, hypotheses)
        scores["bleu_nltk"] = bleu_nltk(references_tok, hypotheses_tok)
    if "meteor" in metrics:
        scores["meteor"] = meteor_score(references_tok, hypotheses_tok, num_refs)
    if "chrf++" in metrics:
        kept = [([r for r in group if r.strip()], h) for group, h in zip(references, hypotheses)]
        kept = [("*#".join(group).split("*#"), h) for group, h in kept if group]
        scores["chrf++"] = chrf_plus_plus([group for group, _ in kept], [h for _, h in kept])
    if "ter" in metrics:
        scores["ter"] = corpus_ter(references_tok, hypotheses_tok)
    return scores


def _tokenized(references, hypotheses):
    """nltk-tokenised copies; each distinct text (padded references repeat) is tokenised once."""
    cache = {}

    def tokenize(text):
        if text not in cache:
            cache[text] = tokenized_line(text)
        return cache[text]

    return [[tokenize(r) for r in group] for group in references], [tokenize(h) for h in hypotheses]


def bleu_nltk(references_tok, hypotheses_tok):
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    kept = [([r.split() for r in group if r.strip()], h.split()) for group, h in zip(references_tok, hypotheses_tok)]
    kept = [(group, h) for group, h in kept if group]
    return corpus_bleu([g for g, _ in kept], [h for _, h in kept], smoothing_function=SmoothingFunction().method3)


def corpus_ter(references_tok, hypotheses_tok):
    cache = {}

    def pair_ter(hypothesis, reference):
        if not reference.split():
            return 1
        if (hypothesis, reference) not in cache:
            cache[hypothesis, reference] = ter(hypothesis.split(), reference.split())
        return cache[hypothesis, reference]

    best = [min(pair_ter(h, r) for r in group) for group, h in zip(references_tok, hypotheses_tok)]
    return sum(best) / len(best)
