"""SQuAD v1.1 exact match and F1, printed exactly as the official evaluate-v1.1.py prints them.

    python eval/squad_eval.py DATASET_JSON PREDICTIONS_JSON [--json OUT]

DATASET_JSON: a SQuAD v1.1 file (the official dev-v1.1.json, or what gpt2_decode.py --ref_type squad
writes: the decoded test questions only). PREDICTIONS_JSON: {question id: answer}. Both are 0-100,
over every question of DATASET_JSON; an unanswered question scores 0.
"""
from lora_nlg.metrics.cli import add_json_flag, report, scorer_parser
from lora_nlg.metrics.squad import evaluate, format_scores, read_dataset, read_predictions
from lora_nlg.util.errors import run_cli


def main(argv=None):
    parser = scorer_parser(__doc__)
    parser.add_argument("dataset_file", help="SQuAD v1.1 dataset JSON (the gold answers)")
    parser.add_argument("prediction_file", help="predictions JSON: {question id: answer}")
    add_json_flag(parser, "the scores")
    args = parser.parse_args(argv)
    scores = evaluate(read_dataset(args.dataset_file), read_predictions(args.prediction_file))
    report(format_scores(scores), scores, args.json)


if __name__ == "__main__":
    run_cli(main)
