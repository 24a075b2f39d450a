"""WebNLG / DART metrics exactly as WebNLG GenerationEval's `eval.py` computes them.

    python eval/generation_eval.py -R PREFIX -H HYP -nr N [-m bleu,meteor,ter,chrf++] [--json OUT]

PREFIX0 ... PREFIX{N-1} hold one reference per line, parallel to HYP (what gpt2_decode.py
--ref_type webnlg|dart writes); LF line endings and no final newline. BLEU is 0-100 (two decimals,
as multi-bleu-detok prints it), the others 0-1. BERTScore and BLEURT (GenerationEval's bert,
bleurt) need model downloads and are not available. METEOR needs Java.
"""
from lora_nlg.metrics.cli import add_json_flag, report, scorer_parser
from lora_nlg.metrics.generation import METRICS, check_metrics, generation_scores, read_instances
from lora_nlg.util.errors import run_cli

LABELS = {"bleu": "BLEU", "bleu_nltk": "BLEU NLTK", "meteor": "METEOR", "chrf++": "chrF++", "ter": "TER"}


def main(argv=None):
    parser = scorer_parser(__doc__)
    parser.add_argument("-R", "--reference", required=True, help="reference file prefix (PREFIX0, PREFIX1, ...)")
    parser.add_argument("-H", "--hypothesis", required=True, help="hypothesis file, one line per instance")
    parser.add_argument("-nr", "--num_refs", type=int, default=4, help="number of reference files (default 4)")
    parser.add_argument("-m", "--metrics", default=",".join(METRICS),
                        help=f"comma-separated subset of {','.join(METRICS)} (default: all)")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    if args.num_refs < 1:
        parser.error("--num_refs must be at least 1")
    metrics = args.metrics.lower().split(",")
    check_metrics(metrics)
    references, hypotheses = read_instances(args.reference, args.hypothesis, args.num_refs)
    scores = generation_scores(references, hypotheses, metrics)
    report("".join(f"{LABELS[key]:<10} {value:.2f}\n" if key == "bleu" else f"{LABELS[key]:<10} {value:.6f}\n"
                   for key, value in scores.items()), scores, args.json)


if __name__ == "__main__":
    run_cli(main)
