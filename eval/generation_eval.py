"""WebNLG / DART metrics exactly as WebNLG GenerationEval's `eval.py` computes them.

    python eval/generation_eval.py -R PREFIX -H HYP -nr N [-m bleu,meteor,ter,chrf++] [--json OUT]

PREFIX0 ... PREFIX{N-1} hold one reference per line, parallel to HYP (what gpt2_decode.py
--ref_type webnlg|dart writes); LF line endings and no final newline. BLEU is 0-100 (two decimals,
as multi-bleu-detok prints it), the others 0-1. BERTScore and BLEURT (GenerationEval's bert,
bleurt) need model downloads and are not available. METEOR needs Java.
"""
import argparse

from lora_nlg.metrics.generation import METRICS, check_metrics, generation_scores, read_instances
from lora_nlg.util.errors import run_cli
from lora_nlg.util.files import write_json

LABELS = {"bleu": "BLEU", "bleu_nltk": "BLEU NLTK", "meteor": "METEOR", "chrf++": "chrF++", "ter": "TER"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("-R", "--reference", required=True, help="reference file prefix (PREFIX0, PREFIX1, ...)")
    parser.add_argument("-H", "--hypothesis", required=True, help="hypothesis file, one line per instance")
    parser.add_argument("-nr", "--num_refs", type=int, default=4, help="number of reference files (default 4)")
    parser.add_argument("-m", "--metrics", default=",".join(METRICS),
                        help=f"comma-separated subset of {','.join(METRICS)} (default: all)")
    parser.add_argument("--json", metavar="OUT", help="also write the unrounded scores as JSON")
    args = parser.parse_args(argv)
    if args.num_refs < 1:
        parser.error("--num_refs must be at least 1")
    metrics = args.metrics.lower().split(",")
    check_metrics(metrics)
    references, hypotheses = read_instances(args.reference, args.hypothesis, args.num_refs)
    scores = generation_scores(references, hypotheses, metrics)
    for key, value in scores.items():
        print(f"{LABELS[key]:<10} {value:.2f}" if key == "bleu" else f"{LABELS[key]:<10} {value:.6f}")
    if args.json:
        write_json(args.json, scores)


if __name__ == "__main__":
    run_cli(main)
