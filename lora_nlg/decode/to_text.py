"""Beam-search predictions (token ids) -> reference / prediction files in the official scorers' layouts.

    gpt2_decode.py --vocab DIR --sample_file PRED.jsonl --input_file TEST_formatted.jsonl
                   --output_ref_file REF --output_pred_file PRED.txt --ref_type {e2e,webnlg,dart,squad}
                   [--ref_num 6] [--tokenize] [--lower] [--filter {all,seen,unseen}] [--ref_unique_file IDS]

Flags and text handling as microsoft/LoRA's gpt2_decode.py:
- test rows are grouped by identical input (context; or by the ids of --ref_unique_file, one per
  row), in order of first appearance; a row's reference is its completion cut at the first
  '<|endoftext|>' and the first blank line ('\\n\\n'), stripped;
- a prediction is its ids decoded with the GPT-2 BPE, cut and stripped the same way;
- --lower lower-cases, --tokenize spaces out every non-word character (`re.split(r'(\\W)')`).
Beyond the reference: texts are made one line (a line break inside a text becomes a space, or the
files would misalign); the number of predictions must match the inputs (an NLGError otherwise).
SQuAD (not in the reference): a prediction is an answer, cut at the first line break ('\\n') and
'<|endoftext|>' and stripped; the rows' gold answers are the references; --tokenize / --lower do not apply.

Prediction jsonl: one `{"id": int, "predict": [ids]}` per line. Our beam search decodes each
unique input once and `id` indexes the unique inputs in order of first appearance; the reference's
beam search decodes every test row and `id` indexes rows. The layout is told apart by the count
(equal to the unique inputs or to the rows; with one row per input both read the same); in the row
layout an input takes the prediction of its last row in the file, as the reference does.

Outputs. e2e: REF with the references of each input one per line and a blank line between inputs,
PRED one line per input (tuetschek/e2e-metrics layout). webnlg / dart: REF is a folder with
`reference0 ... reference{N-1}` (N = --ref_num; inputs with fewer references repeat their first,
as the reference does; extra ones are dropped, with a note) parallel to PRED, LF line ends and no
final newline (GenerationEval reads `split('\\n')`). webnlg with --filter all also writes the seen
and unseen subsets next to them, `REF_seen`, `PRED_seen.txt` and `_unseen` likewise (the paper
reports BLEU unseen / seen / all); a row is seen when its `seen` (or the reference's `cate`) flag is true.
squad: REF is a SQuAD v1.1 JSON file holding exactly the decoded test questions (rows need `id`,
`question`, `title`, `answers`): articles by title in order of first appearance, one paragraph per
input with the prompt as its context; PRED is the JSON {question id: answer}, every question of an
input (rows with identical prompts) getting its prediction. Score them with eval/squad_eval.py.
"""
import argparse
import os
import re

from lora_nlg.data.tokenizer import GPT2Tokenizer
from lora_nlg.metrics import squad
from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import atomic_open, write_json
from lora_nlg.util.jsonl import read_jsonl

EOS_TEXT = "<|endoftext|>"
SEEN_KEYS = ("seen", "cate")  # ours (lora_nlg.data.format_converting), microsoft/LoRA's


class Input:
    """One unique input: its test rows (with their line numbers), references, and (WebNLG) whether
    its category was seen in training."""

    def __init__(self, context, seen):
        self.context = context
        self.rows = []
        self.references = []
        self.seen = seen
        self.prediction = None


def clean_text(text):
    """Cut at the first end-of-text and blank line, strip, and keep it on one line."""
    text = text.split(EOS_TEXT)[0].split("\n\n")[0].strip()
    return " ".join(text.splitlines())


def squad_answer(text):
    """An answer ends at the first line break or end-of-text (generation stops there too)."""
    return text.split(EOS_TEXT)[0].split("\n")[0].strip()


def post_process(text, tokenize, lower):
    if lower:
        text = text.lower()
    if tokenize:
        text = " ".join(" ".join(re.split(r"(\W)", text)).split())
    return text


def read_unique_ids(path):
    ids = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    ids.append(int(line.strip()))
                except ValueError:
                    raise NLGError(f"{path}: line {number}: expected an integer id") from None
    except OSError as err:
        raise NLGError(f"{path}: cannot read ({err.strerror})") from None
    return ids


def group_inputs(input_file, unique_ids=None):
    """(unique inputs in order of first appearance, the input index of every test row)."""
    inputs, index_of, row_input = [], {}, []
    for number, record in read_jsonl(input_file, required=("context", "completion")):
        if not (isinstance(record["context"], str) and isinstance(record["completion"], str)):
            raise NLGError(f"{input_file}: line {number}: 'context' and 'completion' must be text; this looks like the "
                           f"encoded file (token ids): give the formatted one, e.g. test_formatted.jsonl")
        if unique_ids is not None and number > len(unique_ids):
            raise NLGError(f"{input_file}: more rows than the {len(unique_ids)} ids of the unique-id file")
        key = record["context"] if unique_ids is None else unique_ids[number - 1]
        if key not in index_of:
            index_of[key] = len(inputs)
            inputs.append(Input(record["context"], next((bool(record[k]) for k in SEEN_KEYS if k in record), None)))
        inputs[index_of[key]].rows.append((number, record))
        inputs[index_of[key]].references.append(clean_text(record["completion"]))
        row_input.append(index_of[key])
    if not inputs:
        raise NLGError(f"{input_file}: no test rows")
    if unique_ids is not None and len(unique_ids) != len(row_input):
        raise NLGError(f"{input_file}: {len(row_input)} rows but the unique-id file has {len(unique_ids)} ids")
    return inputs, row_input


def attach_predictions(sample_file, inputs, row_input, tokenizer, clean=clean_text):
    """Decode each prediction into its input, cut by `clean`; the id layout is told apart by the count."""
    records = list(read_jsonl(sample_file, required=("id", "predict")))
    if len(records) == len(inputs):
        target = list(range(len(inputs)))
    elif len(records) == len(row_input):
        target = row_input
    else:
        raise NLGError(f"{sample_file}: {len(records)} predictions, but the test file has {len(inputs)} unique "
                       f"inputs ({len(row_input)} rows): predictions and inputs do not belong together")
    used_ids = set()
    for number, record in records:
        ids, index = record["predict"], record["id"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(records) or index in used_ids:
            raise NLGError(f"{sample_file}: line {number}: 'id' must be a new integer in [0, {len(records)})")
        if not (isinstance(ids, list) and all(isinstance(t, int) and 0 <= t < tokenizer.vocab_size for t in ids)):
            raise NLGError(f"{sample_file}: line {number}: 'predict' must be a list of token ids")
        used_ids.add(index)
        inputs[target[index]].prediction = clean(tokenizer.decode(ids))


def select(inputs, subset):
    if subset == "all":
        return inputs
    if any(i.seen is None for i in inputs):
        raise NLGError(f"--filter {subset}: the test file has no 'seen' (or 'cate') flags")
    return [i for i in inputs if i.seen == (subset == "seen")]


def write_e2e(inputs, ref_path, pred_path, tokenize, lower):
    """References one per line with a blank line between inputs; an empty reference cannot be
    written in that layout and is left out, with a note."""
    groups, dropped = [], 0
    for number, item in enumerate(inputs, 1):
        refs = [post_process(r, tokenize, lower) for r in item.references]
        dropped += sum(not r for r in refs)
        if not any(refs):
            raise NLGError(f"{ref_path}: input {number} has only empty references")
        groups.append("".join(r + "\n" for r in refs if r))
    if dropped:
        print(f"note: {dropped} empty reference(s) left out: the E2E layout has no way to write them")
    _write(ref_path, "\n".join(groups))
    _write(pred_path, "".join(post_process(i.prediction, tokenize, lower) + "\n" for i in inputs))


def write_multi_reference(inputs, ref_dir, pred_path, ref_num, tokenize, lower):
    """ref_dir/reference0..{ref_num-1} parallel to pred_path; no final newline."""
    for k in range(ref_num):
        lines = [post_process(i.references[k] if k < len(i.references) else i.references[0], tokenize, lower)
                 for i in inputs]
        _write(os.path.join(ref_dir, f"reference{k}"), "\n".join(lines))
    _write(pred_path, "\n".join(post_process(i.prediction, tokenize, lower) for i in inputs))


def squad_files(inputs, input_file):
    """(SQuAD v1.1 dataset of the inputs' questions, {question id: prediction}), questions in file order."""
    rows = sorted(((number, row, item) for item in inputs for number, row in item.rows), key=lambda r: r[0])
    articles, predictions = {}, {}
    for number, row, item in rows:
        check_squad_row(input_file, number, row)
        if row["id"] in predictions:
            raise NLGError(f"{input_file}: line {number}: question id {row['id']} appears twice")
        predictions[row["id"]] = item.prediction
        paragraphs = articles.setdefault(row["title"], {})
        if item.context not in paragraphs:
            paragraphs[item.context] = {"context": item.context, "qas": []}
        paragraphs[item.context]["qas"].append(
            {"id": row["id"], "question": row["question"], "answers": row["answers"]})
    data = [{"title": title, "paragraphs": list(paragraphs.values())} for title, paragraphs in articles.items()]
    return {"version": squad.VERSION, "data": data}, predictions


def check_squad_row(input_file, number, row):
    for key in ("id", "question", "title"):
        if not isinstance(row.get(key), str):
            raise NLGError(f"{input_file}: line {number}: --ref_type squad needs a string {key!r} "
                           "(a SQuAD formatted test file)")
    if not squad.is_answer_list(row.get("answers")):
        raise NLGError(f"{input_file}: line {number}: 'answers' must be a non-empty list of {{'text': ...}} objects")


def subset_path(path, subset):
    root, extension = os.path.splitext(path.rstrip(os.sep))
    return f"{root}_{subset}{extension}"


def _write(path, text):
    with atomic_open(path) as f:
        f.write(text)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--vocab", required=True, help="folder with encoder.json and vocab.bpe")
    parser.add_argument("--sample_file", required=True, help="beam-search predictions (jsonl of token ids)")
    parser.add_argument("--input_file", required=True, help="formatted test jsonl (context, completion, ...)")
    parser.add_argument("--output_ref_file", required=True,
                        help="e2e: reference file; webnlg/dart: folder; squad: SQuAD v1.1 dataset JSON")
    parser.add_argument("--output_pred_file", required=True,
                        help="prediction / hypothesis file; squad: JSON {question id: answer}")
    parser.add_argument("--ref_unique_file", help="optional: one integer per test row naming its input")
    parser.add_argument("--ref_type", default="e2e", choices=["e2e", "webnlg", "dart", "squad"])
    parser.add_argument("--ref_num", type=int, default=6, help="webnlg/dart: number of reference files")
    parser.add_argument("--tokenize", action="store_true", help="space out non-word characters")
    parser.add_argument("--lower", action="store_true", help="lower-case")
    parser.add_argument("--filter", default="all", choices=["all", "seen", "unseen"],
                        help="webnlg: keep inputs of seen / unseen categories only")
    args = parser.parse_args(argv)
    if args.ref_num < 1:
        parser.error("--ref_num must be at least 1")
    if args.ref_type == "squad" and (args.tokenize or args.lower):
        parser.error("--tokenize and --lower do not apply to --ref_type squad (the scorer normalises answers)")
    return args


def main(argv=None):
    args = parse_args(argv)
    tokenizer = GPT2Tokenizer(args.vocab)
    unique_ids = read_unique_ids(args.ref_unique_file) if args.ref_unique_file else None
    inputs, row_input = group_inputs(args.input_file, unique_ids)
    attach_predictions(args.sample_file, inputs, row_input, tokenizer,
                       squad_answer if args.ref_type == "squad" else clean_text)
    print(f"{len(inputs)} unique inputs ({len(row_input)} test rows) from {args.input_file}")
    if args.ref_type == "squad":
        dataset, predictions = squad_files(select(inputs, args.filter), args.input_file)
        write_json(args.output_ref_file, dataset)
        write_json(args.output_pred_file, predictions)
        print(f"wrote {len(predictions)} questions to {args.output_ref_file} and {args.output_pred_file}")
        return
    if args.ref_type == "e2e":
        write_e2e(select(inputs, args.filter), args.output_ref_file, args.output_pred_file, args.tokenize, args.lower)
        print(f"wrote {args.output_ref_file} and {args.output_pred_file}")
        return
    extra = sum(len(i.references) > args.ref_num for i in inputs)
    if extra:
        print(f"note: {extra} input(s) have more than {args.ref_num} references; "
              f"only the first {args.ref_num} are written")
    subsets = [(args.filter, args.output_ref_file, args.output_pred_file)]
    if args.ref_type == "webnlg" and args.filter == "all":
        if any(i.seen is None for i in inputs):
            print(f"note: {args.input_file} has no 'seen' (or 'cate') flags: seen / unseen subsets not written")
        else:
            subsets += [(s, subset_path(args.output_ref_file, s), subset_path(args.output_pred_file, s))
                        for s in ("seen", "unseen")]
    for subset, ref_dir, pred_path in subsets:
        chosen = select(inputs, subset)
        if not chosen:
            print(f"note: no {subset} inputs: {ref_dir} and {pred_path} not written")
            continue
        write_multi_reference(chosen, ref_dir, pred_path, args.ref_num, args.tokenize, args.lower)
        print(f"{subset}: {len(chosen)} inputs -> {ref_dir}/reference0..{args.ref_num - 1} and {pred_path}")
