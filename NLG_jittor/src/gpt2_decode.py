"""Predictions (token ids) -> the official scorers' reference / prediction files.

Framework-free, so identical in both trees: all logic is in lora_nlg/decode/to_text.py (see its --help).
"""
from lora_nlg.decode.to_text import main
from lora_nlg.util.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
