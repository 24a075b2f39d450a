"""NLG and QA metrics exactly as the official scorers compute them (framework-free).

Three suites, each reproducing one official tool number for number, quirks included:
- `e2e`: tuetschek/e2e-metrics `measure_scores.py -p` -- BLEU and NIST from the Python MT-Eval
  port (`mteval`), METEOR 1.5, ROUGE-L and CIDEr-D from the MS-COCO caption code (`coco`).
- `generation`: WebNLG GenerationEval `eval.py` -- BLEU as multi-bleu-detok (`multi_bleu`),
  METEOR 1.5 `-norm` (`meteor`) on nltk 3.5 tokens (`nltk_tokenize`), TER as pyter (`ter`),
  chrF++ as its chrF.py (`chrf`).
- `squad`: SQuAD v1.1 `evaluate-v1.1.py` -- exact match and token F1 of normalised answers.
`java` finds the Java runtime and the METEOR / Stanford PTB jars (shipped by pycocoevalcap).
"""
