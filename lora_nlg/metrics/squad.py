"""SQuAD v1.1 exact match and F1 exactly as the official `evaluate-v1.1.py` computes them.

- answers are normalised in the official order: lower-case, drop every `string.punctuation`
  character (so "U.S." -> "us"), replace the whole words a / an / the by a space, collapse whitespace;
- exact match: the normalised texts are equal; F1: over the normalised whitespace tokens, counted
  with multiplicity, 0 when no token is shared (even when both are empty, where exact match is 1);
- per question the best score over its gold answers; 100 x the mean over EVERY question of the
  dataset, a question without a prediction scoring 0; predictions for other ids are ignored.
Sums run in dataset order with the official arithmetic, so the floats are the official ones.
"""
import json
import re
import string
import sys
from collections import Counter

from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import read_text

VERSION = "1.1"
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
MAX_UNANSWERED_LINES = 10  # beyond this, one summary line instead of one line per question


def normalize_answer(text):
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction, gold):
    return normalize_answer(prediction) == normalize_answer(gold)


def f1(prediction, gold):
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0
    precision = 1.0 * shared / len(predicted)
    recall = 1.0 * shared / len(expected)
    return (2 * precision * recall) / (precision + recall)


def best_over_golds(metric, prediction, golds):
    return max(metric(prediction, gold) for gold in golds)


def questions(dataset):
    """Every qa object of a dataset's articles, in file order."""
    return [qa for article in dataset for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def evaluate(dataset, predictions):
    """{'exact_match', 'f1'} (0-100). dataset: the articles (a SQuAD file's "data"); predictions: {id: text}."""
    total_em = total_f1 = 0
    unanswered = []
    qas = questions(dataset)
    for qa in qas:
        if qa["id"] not in predictions:
            unanswered.append(qa["id"])
            continue
        golds = [answer["text"] for answer in qa["answers"]]
        total_em += best_over_golds(exact_match, predictions[qa["id"]], golds)
        total_f1 += best_over_golds(f1, predictions[qa["id"]], golds)
    _report_unanswered(unanswered)
    return {"exact_match": 100.0 * total_em / len(qas), "f1": 100.0 * total_f1 / len(qas)}


def _report_unanswered(ids):
    if len(ids) > MAX_UNANSWERED_LINES:
        print(f"{len(ids)} unanswered questions will receive score 0 (the first: {ids[0]}).", file=sys.stderr)
        return
    for question_id in ids:
        print(f"Unanswered question {question_id} will receive score 0.", file=sys.stderr)


def _read_json(path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise NLGError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None


def read_dataset(path):
    """The articles of a SQuAD v1.1 file, checked to have what `evaluate` reads; another version is
    scored anyway after a warning, as the official script does."""
    root = _read_json(path)
    if not isinstance(root, dict) or not isinstance(root.get("data"), list):
        raise NLGError(f"{path}: not a SQuAD v1.1 dataset (expected an object with a 'data' list of articles)")
    if root.get("version") != VERSION:
        print(f"warning: {path}: expected a SQuAD v{VERSION} dataset, got version {root.get('version')!r}; "
              "scoring it anyway, as the official script does", file=sys.stderr)
    for a, article in enumerate(root["data"]):
        where = f"data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise NLGError(f"{path}: not a SQuAD v1.1 dataset ({where} has no 'paragraphs' list)")
        for p, paragraph in enumerate(article["paragraphs"]):
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise NLGError(f"{path}: not a SQuAD v1.1 dataset ({where}.paragraphs[{p}] has no 'qas' list)")
            for q, qa in enumerate(paragraph["qas"]):
                _check_question(path, qa, f"{where}.paragraphs[{p}].qas[{q}]")
    if not questions(root["data"]):
        raise NLGError(f"{path}: no questions to score")
    return root["data"]


def _check_question(path, qa, where):
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str):
        raise NLGError(f"{path}: not a SQuAD v1.1 dataset ({where} has no string 'id')")
    if not is_answer_list(qa.get("answers")):
        raise NLGError(f"{path}: not a SQuAD v1.1 dataset (question {qa['id']} needs a non-empty "
                       "'answers' list of {'text': string} objects)")


def is_answer_list(answers):
    """What `evaluate` needs of a question's gold answers: a non-empty list of {'text': string}."""
    return (isinstance(answers, list) and len(answers) > 0
            and all(isinstance(answer, dict) and isinstance(answer.get("text"), str) for answer in answers))


def read_predictions(path):
    """{question id: answer text}."""
    predictions = _read_json(path)
    if not isinstance(predictions, dict):
        raise NLGError(f"{path}: predictions must be a JSON object of question id -> answer string, "
                       f"got {type(predictions).__name__}")
    for question_id, answer in predictions.items():
        if not isinstance(answer, str):
            raise NLGError(f"{path}: the prediction for {question_id} is {type(answer).__name__}, not a string")
    return predictions


def format_scores(scores):
    """The line evaluate-v1.1.py prints."""
    return json.dumps({"exact_match": scores["exact_match"], "f1": scores["f1"]})
