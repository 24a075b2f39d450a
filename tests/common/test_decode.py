"""Decode: prediction ids + formatted test rows -> the official scorers' reference / prediction files."""
import json
import pathlib
import subprocess
import sys

import pytest

from lora_nlg import decode
from lora_nlg.errors import NLGError
from lora_nlg.metrics import e2e, generation
from lora_nlg.tokenizer import EOS_ID, GPT2Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
VOCAB = ROOT.parent / "shared" / "nlg_data" / "vocab"
ROWS = [  # three inputs; input A has three references, C none seen
    {"context": "A", "completion": " A one.", "seen": True},
    {"context": "B", "completion": " B one<|endoftext|>", "seen": False},
    {"context": "A", "completion": " A two,\n\nignored", "seen": True},
    {"context": "C", "completion": " C One", "seen": False},
    {"context": "A", "completion": " A three", "seen": True},
]


@pytest.fixture(scope="module")
def tokenizer():
    return GPT2Tokenizer(str(VOCAB))


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def predictions(tokenizer, texts, ids=None):
    ids = range(len(texts)) if ids is None else ids
    return [{"id": i, "predict": tokenizer.encode(text) + [EOS_ID] + tokenizer.encode(" junk")}
            for i, text in zip(ids, texts)]


def run_decode(tmp_path, tokenizer, texts, *extra, ids=None, rows=ROWS):
    write_jsonl(tmp_path / "test.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", predictions(tokenizer, texts, ids))
    decode.main(["--vocab", str(VOCAB), "--sample_file", str(tmp_path / "pred.jsonl"),
                 "--input_file", str(tmp_path / "test.jsonl"), "--output_ref_file", str(tmp_path / "ref"),
                 "--output_pred_file", str(tmp_path / "hyp.txt"), *extra])


def test_clean_text_cuts_at_end_of_text_and_blank_line_and_keeps_one_line():
    assert decode.clean_text(" Done.<|endoftext|>more") == "Done."
    assert decode.clean_text("first\n\nsecond") == "first"
    assert decode.clean_text(" a\nb\u2028c ") == "a b c"


def test_post_process_lower_and_tokenize_as_the_reference():
    assert decode.post_process("Hello, World's café-bar", tokenize=True, lower=True) == "hello , world ' s café - bar"
    assert decode.post_process("Hello,  World", tokenize=False, lower=False) == "Hello,  World"


def test_e2e_layout_with_one_prediction_per_unique_input(tmp_path, tokenizer):
    run_decode(tmp_path, tokenizer, [" pa", " pb", "pc\nstill c"], "--ref_type", "e2e")
    assert (tmp_path / "ref").read_text() == "A one.\nA two,\nA three\n\nB one\n\nC One\n"
    assert (tmp_path / "hyp.txt").read_text() == "pa\npb\npc still c\n"
    assert e2e.read_references(tmp_path / "ref") == [["A one.", "A two,", "A three"], ["B one"], ["C One"]]


def test_reference_row_layout_takes_the_last_row_of_each_input(tmp_path, tokenizer):
    # five predictions = five rows; ids index rows; input A (rows 0, 2, 4) gets the one listed last
    run_decode(tmp_path, tokenizer, ["a4", "b1", "a0", "c3", "a2"], "--ref_type", "e2e", ids=[4, 1, 0, 3, 2])
    assert (tmp_path / "hyp.txt").read_text() == "a2\nb1\nc3\n"


def test_webnlg_writes_all_seen_unseen_with_padding_and_no_final_newline(tmp_path, tokenizer):
    run_decode(tmp_path, tokenizer, [" PA", " PB", " PC"], "--ref_type", "webnlg", "--ref_num", "4",
               "--tokenize", "--lower")
    assert (tmp_path / "hyp.txt").read_text() == "pa\npb\npc"
    assert [(tmp_path / "ref" / f"reference{k}").read_text() for k in range(4)] == [
        "a one .\nb one\nc one", "a two ,\nb one\nc one", "a three\nb one\nc one", "a one .\nb one\nc one"]
    assert (tmp_path / "hyp_seen.txt").read_text() == "pa"
    assert (tmp_path / "ref_seen" / "reference1").read_text() == "a two ,"
    assert (tmp_path / "hyp_unseen.txt").read_text() == "pb\npc"
    references, hypotheses = generation.read_instances(str(tmp_path / "ref_unseen" / "reference"),
                                                       tmp_path / "hyp_unseen.txt", 4)
    assert hypotheses == ["pb", "pc"] and references[1] == ["c one"] * 4


def test_reference_cate_flag_and_filter(tmp_path, tokenizer):
    rows = [{"context": r["context"], "completion": r["completion"], "cate": r["seen"]} for r in ROWS]
    run_decode(tmp_path, tokenizer, ["pa", "pb", "pc"], "--ref_type", "webnlg", "--filter", "unseen", rows=rows)
    assert (tmp_path / "hyp.txt").read_text() == "pb\npc"
    assert not (tmp_path / "hyp_seen.txt").exists()


def test_dart_keeps_order_of_first_appearance(tmp_path, tokenizer):
    run_decode(tmp_path, tokenizer, ["pa", "pb", "pc"], "--ref_type", "dart", "--ref_num", "1")
    assert (tmp_path / "ref" / "reference0").read_text() == "A one.\nB one\nC One"
    assert not (tmp_path / "hyp_seen.txt").exists()


def test_prediction_count_must_match_inputs(tmp_path, tokenizer):
    with pytest.raises(NLGError, match=r"pred.jsonl: 2 predictions, but the test file has 3 unique inputs \(5 rows\)"):
        run_decode(tmp_path, tokenizer, ["pa", "pb"], "--ref_type", "dart")


def test_repeated_prediction_id_is_an_error(tmp_path, tokenizer):
    with pytest.raises(NLGError, match=r"pred.jsonl: line 2: 'id' must be a new integer in \[0, 3\)"):
        run_decode(tmp_path, tokenizer, ["pa", "pb", "pc"], "--ref_type", "dart", ids=[0, 0, 1])


def test_filter_needs_seen_flags(tmp_path, tokenizer):
    rows = [{"context": r["context"], "completion": r["completion"]} for r in ROWS]
    with pytest.raises(NLGError, match=r"--filter seen: the test file has no 'seen'"):
        run_decode(tmp_path, tokenizer, ["pa", "pb", "pc"], "--ref_type", "webnlg", "--filter", "seen", rows=rows)


@pytest.mark.parametrize("tree", ["NLG_pytorch", "NLG_jittor"])
def test_entry_points_of_both_trees_are_the_shared_cli(tmp_path, tokenizer, tree):
    write_jsonl(tmp_path / "test.jsonl", ROWS)
    write_jsonl(tmp_path / "pred.jsonl", predictions(tokenizer, ["pa", "pb"]))
    command = [sys.executable, "src/gpt2_decode.py", "--vocab", str(VOCAB),
               "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file", str(tmp_path / "test.jsonl"),
               "--output_ref_file", str(tmp_path / "ref"), "--output_pred_file", str(tmp_path / "hyp.txt")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT / tree)
    assert result.returncode == 2
    assert result.stderr == (f"error: {tmp_path / 'pred.jsonl'}: 2 predictions, but the test file has 3 unique "
                             "inputs (5 rows): predictions and inputs do not belong together\n")
