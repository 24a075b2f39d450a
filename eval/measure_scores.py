"""E2E metrics, printed exactly as tuetschek/e2e-metrics `measure_scores.py -p` prints them.

    python eval/measure_scores.py REF PRED [--json OUT]

REF: the references of each input one per line, inputs separated by a blank line (what
gpt2_decode.py --ref_type e2e writes). PRED: one prediction per input. Needs Java (METEOR 1.5 and
the Stanford PTB tokenizer, both from pycocoevalcap's jars).
"""
from lora_nlg.metrics.cli import add_json_flag, report, scorer_parser
from lora_nlg.metrics.e2e import e2e_scores, format_scores, read_predictions, read_references
from lora_nlg.util.errors import run_cli


def main(argv=None):
    parser = scorer_parser(__doc__)
    parser.add_argument("ref_file", help="references: one per line, a blank line between inputs")
    parser.add_argument("pred_file", help="predictions: one line per input")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    references = read_references(args.ref_file)
    scores = e2e_scores(references, read_predictions(args.pred_file, len(references)))
    report(format_scores(scores), scores, args.json)


if __name__ == "__main__":
    run_cli(main)
