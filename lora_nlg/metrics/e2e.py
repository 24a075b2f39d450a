"""The E2E metrics exactly as tuetschek/e2e-metrics `measure_scores.py -p` computes and prints them.

Files as that script reads them: UTF-8, split into lines wherever Python's `splitlines` splits,
each line stripped. References: the references of one input on consecutive lines, inputs separated
by one blank line (a file without blank lines holds one reference per input). Predictions: one line
per input. BLEU and NIST come from the Python MT-Eval port (`mteval`), METEOR, ROUGE-L and CIDEr from
the MS-COCO caption code (`coco`).
"""
from lora_nlg.metrics import mteval
from lora_nlg.metrics.coco import coco_scores
from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import read_text

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


def read_lines(path):
    text = read_text(path)
    return [line.strip() for line in text.splitlines()]


def read_references(path):
    """One list of references per input."""
    groups = [[]]
    for number, line in enumerate(read_lines(path), 1):
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:
            raise NLGError(f"{path}: line {number}: blank line where input {len(groups)}'s references should start")
    if not groups[-1]:
        groups.pop()
    if not groups:
        raise NLGError(f"{path}: no references")
    if len(groups) == 1:  # no blank line at all: one reference per input, as the official script reads it
        groups = [[reference] for reference in groups[0]]
    return groups


def read_predictions(path, expected):
    predictions = read_lines(path)
    if len(predictions) != expected:
        raise NLGError(f"{path}: {len(predictions)} predictions but the reference file has {expected} inputs")
    return predictions


def e2e_scores(references, predictions):
    """{'BLEU', 'NIST', 'METEOR', 'ROUGE_L', 'CIDEr'}; references: one list of strings per prediction."""
    scores = {"BLEU": mteval.bleu(references, predictions), "NIST": mteval.nist(references, predictions)}
    scores.update(coco_scores(references, predictions))
    return {metric: scores[metric] for metric in METRICS}


def format_scores(scores):
    """The block `measure_scores.py` prints."""
    return "SCORES:\n==============\n" + "".join(f"{m}: {scores[m]:.4f}\n" for m in METRICS) + "\n"
