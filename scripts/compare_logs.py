"""Compare two training runs: overlaid curves in one PNG and a markdown table of their differences.

    python scripts/compare_logs.py trained_models/align_e2e_tiny/pytorch trained_models/align_e2e_tiny/jittor \\
        --out img/alignment_e2e_tiny.png --labels pytorch jittor [--md alignment.md]

A run is a gpt2_ft.py work dir (log.jsonl, plus scores.json when scored) or a log file (log.jsonl,
log.txt, or the reference gpt2_ft.py's captured stdout). The table gives, per curve (loss, avg loss,
ppl, valid loss, valid ppl, learning rate), the max and mean |A - B| over the steps both runs logged,
then the final metrics of both runs (valid loss and ppl, best ppl, ms/batch, tokens/s, scores).
"""
import argparse
import os

from lora_nlg.pipeline.compare import markdown_table, read_run
from lora_nlg.pipeline.plots import plot_runs
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.files import atomic_open


def run_name(path):
    """Default label: the run directory's name (the folder holding a log file)."""
    path = os.path.abspath(path)
    return os.path.basename(path if os.path.isdir(path) else os.path.dirname(path))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a", help="work dir or log file of the first run")
    parser.add_argument("run_b", help="work dir or log file of the second run")
    parser.add_argument("--out", required=True, help="PNG to write (e.g. img/alignment_e2e_tiny.png)")
    parser.add_argument("--labels", nargs=2, metavar=("A", "B"), help="legend names (default: the run folders' names)")
    parser.add_argument("--md", metavar="OUT.md", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if not args.out.endswith(".png"):
        raise NLGError(f"{args.out}: --out must name a .png file")
    labels = args.labels or [run_name(args.run_a), run_name(args.run_b)]
    runs = [read_run(args.run_a, labels[0]), read_run(args.run_b, labels[1])]
    table = markdown_table(*runs)
    plot_runs(runs, args.out, title=f"{labels[0]} vs {labels[1]}")
    print(table, end="")
    if args.md:
        with atomic_open(args.md) as f:
            f.write(table)
    print(f"wrote {args.out}" + (f" and {args.md}" if args.md else ""))


if __name__ == "__main__":
    run_cli(main)
