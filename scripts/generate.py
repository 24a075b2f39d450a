"""Answer one question about one paragraph with a trained adapter (the SQuAD project's "look at the generated text").

    python scripts/generate.py --framework pytorch|jittor --init_checkpoint BASE [--lora_checkpoint ADAPTER]
                               --context "PARAGRAPH" --question "QUESTION" [--beam 1] [--eval_len 32]

The prompt is the SQuAD pipeline's (`Context: ... Question: ... Answer:`, lora_nlg.data.format_converting.squad_prompt);
the answer comes from the chosen framework's gpt2_beam.py, run in that framework's environment with the
pipeline's stopping rule (a newline or <|endoftext|>), and is cut like the pipeline's predictions. Without
--lora_checkpoint the base model answers alone (give --model_card then, as for gpt2_beam.py).
"""
import argparse
import os
import subprocess
import tempfile

from lora_nlg.data.format_converting import squad_prompt
from lora_nlg.data.tokenizer import EOS_ID, GPT2Tokenizer
from lora_nlg.decode.to_text import squad_answer
from lora_nlg.pipeline import presets
from lora_nlg.pipeline.frameworks import VENVS, framework_cwd, framework_python, framework_script
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.jsonl import read_jsonl, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="pytorch", choices=list(VENVS))
    parser.add_argument("--init_checkpoint", required=True, help="base GPT-2 (file or HF folder)")
    parser.add_argument("--lora_checkpoint", help="adapter written by gpt2_ft.py (model.<step>.safetensors)")
    parser.add_argument("--model_card", help="model shape when no adapter is given (e.g. gpt2.tiny)")
    parser.add_argument("--context", required=True, help="the paragraph")
    parser.add_argument("--question", required=True)
    parser.add_argument("--beam", type=int, default=1, help="1: greedy (the pipeline's setting)")
    parser.add_argument("--eval_len", type=int, default=presets.SQUAD_GREEDY["eval_len"], help="answer tokens")
    parser.add_argument("--seq_len", type=int, default=512, help="prompt + answer fit in this (prompt cut on the left)")
    parser.add_argument("--vocab", default=os.path.join(ROOT, "data", "vocab"), help="GPT-2 encoder.json/vocab.bpe")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.context.strip() or not args.question.strip():
        parser.error("--context and --question must not be empty")
    if args.lora_checkpoint is None and args.model_card is None:
        parser.error("without --lora_checkpoint, give --model_card (the base model's shape)")
    for name in ("init_checkpoint", "lora_checkpoint"):  # gpt2_beam.py runs from NLG_<framework>/
        if getattr(args, name) is not None:
            setattr(args, name, os.path.abspath(getattr(args, name)))
    return args


def beam_argv(args, data, work_dir):
    """The framework's gpt2_beam.py command for one encoded prompt, with the SQuAD pipeline's search settings."""
    settings = {**presets.SQUAD_GREEDY, "beam": args.beam, "eval_len": args.eval_len, "seq_len": args.seq_len,
                "batch_size": 1, "device": args.device, "init_checkpoint": args.init_checkpoint,
                "lora_checkpoint": args.lora_checkpoint, "model_card": args.model_card}
    return [framework_python(args.framework), framework_script(args.framework, "gpt2_beam.py"), "--data", data,
            *presets.as_flags(settings), "--work_dir", work_dir, "--output_file", "answer.jsonl"]


def answer(args):
    tokenizer = GPT2Tokenizer(args.vocab)
    prompt = squad_prompt(args.context, args.question)
    with tempfile.TemporaryDirectory() as work_dir:
        data = os.path.join(work_dir, "prompt.jsonl")
        write_jsonl(data, [{"context": tokenizer.encode(prompt) + [EOS_ID], "completion": [EOS_ID]}])
        run = subprocess.run(beam_argv(args, data, work_dir), cwd=framework_cwd(args.framework),
                             capture_output=True, text=True)
        if run.returncode != 0:
            lines = (run.stderr or run.stdout).strip().splitlines() or ["(no output)"]
            raise NLGError(f"gpt2_beam.py ({args.framework}) failed: {lines[-1]}")
        (_, row), = read_jsonl(os.path.join(work_dir, "answer.jsonl"))
    return squad_answer(tokenizer.decode(row["predict"]))


def main(argv=None):
    args = parse_args(argv)
    text = answer(args)
    print(f"Context: {args.context.strip()}\nQuestion: {args.question.strip()}\nAnswer: {text}")


if __name__ == "__main__":
    run_cli(main)
