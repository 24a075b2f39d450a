"""METEOR, ROUGE-L and CIDEr-D as e2e-metrics computes them: with the MS-COCO caption code.

References and hypotheses first go through the Stanford PTB tokenizer (lower-cased, punctuation
tokens dropped); then METEOR 1.5 (`-norm`, over stdio), ROUGE-L (LCS F-measure, beta 1.2, best
reference) and CIDEr-D (sigma 6, clipped counts, x10, document frequencies from these references).
These are pycocoevalcap's own classes, so the numbers are the library's; we only add clear errors.
"""
from lora_nlg.metrics.java import java_executable, meteor_jar, ptb_tokenizer_jar
from lora_nlg.util.errors import NLGError


def coco_scores(references, hypotheses):
    """{'METEOR', 'ROUGE_L', 'CIDEr'}. references: one list of reference strings per hypothesis."""
    for check in (java_executable, meteor_jar, ptb_tokenizer_jar):  # clear errors before the library runs java
        check()
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({f"inst-{i}": [{"caption": r} for r in group] for i, group in enumerate(references)})
    res = tokenizer.tokenize({f"inst-{i}": [{"caption": h}] for i, h in enumerate(hypotheses)})
    if len(gts) != len(references) or len(res) != len(hypotheses):
        raise NLGError("PTB tokenizer (java): returned fewer lines than it was given")
    try:
        meteor = Meteor().compute_score(gts, res)[0]
    except (OSError, ValueError) as err:
        raise NLGError(f"METEOR (java): failed ({err})") from None
    rouge, cider = Rouge().compute_score(gts, res)[0], Cider().compute_score(gts, res)[0]
    return {"METEOR": meteor, "ROUGE_L": rouge, "CIDEr": cider}
