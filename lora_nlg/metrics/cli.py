"""What the three scorer CLIs in eval/ share: usage text from the script's docstring, `--json OUT`, the printout."""
import argparse

from lora_nlg.util.files import write_json


def scorer_parser(doc):
    """An ArgumentParser described by a scorer script's docstring (first paragraph; the rest after the usage)."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 2)[2])


def add_json_flag(parser, what="the unrounded scores"):
    parser.add_argument("--json", metavar="OUT", help=f"also write {what} as JSON")


def report(text, scores, json_path):
    """Print the official scorer's text and, with --json, write the scores."""
    print(text, end="" if text.endswith("\n") else "\n")
    if json_path:
        write_json(json_path, scores)
