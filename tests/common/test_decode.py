"""Decode: prediction ids + formatted test rows -> the official scorers' reference / prediction files."""
import json
import pathlib
import subprocess
import sys

import pytest

from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.decode import to_text
from lora_nlg.metrics import e2e, generation
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import write_jsonl
from testpaths import VOCAB

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROWS = [  # three inputs; input A has three references, C none seen
    {"context": "A", "completion": " A one.", "seen": True},
    {"context": "B", "completion": " B one<|endoftext|>", "seen": False},
    {"context": "A", "completion": " A two,\n\nignored", "seen": True},
    {"context": "C", "completion": " C One", "seen": False},
    {"context": "A", "completion": " A three", "seen": True},
]


def predictions(tokenizer, texts, ids=None):
    ids = range(len(texts)) if ids is None else ids
    return [{"id": i, "predict": tokenizer.encode(text) + [EOS_ID] + tokenizer.encode(" junk")}
            for i, text in zip(ids, texts)]


def run_decode(tmp_path, tokenizer, texts, *extra, ids=None, rows=ROWS):
    write_jsonl(tmp_path / "test.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", predictions(tokenizer, texts, ids))
    to_text.main(["--vocab", str(VOCAB), "--sample_file", str(tmp_path / "pred.jsonl"),
                 "--input_file", str(tmp_path / "test.jsonl"), "--output_ref_file", str(tmp_path / "ref"),
                 "--output_pred_file", str(tmp_path / "hyp.txt"), *extra])


def test_clean_text_cuts_at_end_of_text_and_blank_line_and_keeps_one_line():
    assert to_text.clean_text(" Done.<|endoftext|>more") == "Done."
    assert to_text.clean_text("first\n\nsecond") == "first"
    assert to_text.clean_text(" a\nb\u2028c ") == "a b c"


def test_post_process_lower_and_tokenize_as_the_reference():
    assert to_text.post_process("Hello, World's café-bar", tokenize=True, lower=True) == "hello , world ' s café - bar"
    assert to_text.post_process("Hello,  World", tokenize=False, lower=False) == "Hello,  World"


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


def squad_row(qid, title, prompt_question, golds, question=None):
    prompt = f"Context: {title} paragraph. Question: {prompt_question} Answer:"
    return {"context": prompt, "completion": golds[0], "id": qid, "question": question or prompt_question,
            "title": title, "answers": [{"text": g, "answer_start": 0} for g in golds], "truncated": False}


SQUAD_ROWS = [  # four unique prompts: q3 and q4 share one; q5 is in the first article again
    squad_row("q1", "Broncos", "Who won?", ["Denver Broncos", "the Broncos"]),
    squad_row("q2", "Broncos", "Who lost?", ["Carolina Panthers"]),
    squad_row("q3", "Nile", "How long?", ["6,650 km"]),
    squad_row("q4", "Nile", "How long?", ["6650 kilometres"], question="How long is it?"),
    squad_row("q5", "Broncos", "Where from?", ["Denver"]),
]


def test_squad_answer_cuts_at_the_first_line_break_and_end_of_text():
    assert to_text.squad_answer(" Denver Broncos\nThey won\n\nmore") == "Denver Broncos"
    assert to_text.squad_answer(" Denver<|endoftext|>x\ny") == "Denver"
    assert to_text.squad_answer("\nDenver") == ""


def test_squad_writes_a_v1_1_dataset_and_predictions_that_squad_eval_scores(tmp_path, tokenizer):
    run_decode(tmp_path, tokenizer, [" Denver Broncos\nThey won", " Carolina", " 6,650 km", " the answer is Denver"],
               "--ref_type", "squad", rows=SQUAD_ROWS)
    predictions = json.loads((tmp_path / "hyp.txt").read_text())
    assert predictions == {"q1": "Denver Broncos", "q2": "Carolina", "q3": "6,650 km", "q4": "6,650 km",
                           "q5": "the answer is Denver"}
    reference = json.loads((tmp_path / "ref").read_text())
    assert reference["version"] == "1.1"
    assert [article["title"] for article in reference["data"]] == ["Broncos", "Nile"]
    broncos, nile = (article["paragraphs"] for article in reference["data"])
    assert [p["context"] for p in broncos] == [SQUAD_ROWS[i]["context"] for i in (0, 1, 4)]
    assert [[qa["id"] for qa in p["qas"]] for p in broncos + nile] == [["q1"], ["q2"], ["q5"], ["q3", "q4"]]
    assert nile[0]["qas"][1] == {"id": "q4", "question": "How long is it?", "answers": SQUAD_ROWS[3]["answers"]}
    result = subprocess.run([sys.executable, str(ROOT / "eval" / "squad_eval.py"), str(tmp_path / "ref"),
                             str(tmp_path / "hyp.txt")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    # EM: q1, q3 -> 2/5. F1: q1 1; q2 "carolina" vs "carolina panthers" P 1 R 1/2 -> 2/3; q3 1;
    # q4 "6650 km" vs "6650 kilometres" 1/2; q5 "answer is denver" vs "denver" P 1/3 R 1 -> 1/2
    assert scores == {"exact_match": 40.0, "f1": pytest.approx(100 * (1 + 2 / 3 + 1 + 1 / 2 + 1 / 2) / 5)}


def test_squad_refuses_tokenize_and_lower(tmp_path, tokenizer, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_decode(tmp_path, tokenizer, ["a"] * 4, "--ref_type", "squad", "--lower", rows=SQUAD_ROWS)
    assert exit_info.value.code == 2
    assert "--tokenize and --lower do not apply to --ref_type squad" in capsys.readouterr().err


def test_squad_rows_need_the_question_fields(tmp_path, tokenizer):
    rows = [SQUAD_ROWS[0], {k: v for k, v in SQUAD_ROWS[1].items() if k != "id"}]
    with pytest.raises(NLGError, match=r"test.jsonl: line 2: --ref_type squad needs a string 'id'"):
        run_decode(tmp_path, tokenizer, ["a", "b"], "--ref_type", "squad", rows=rows)
    rows = [SQUAD_ROWS[0], dict(SQUAD_ROWS[1], answers=[])]
    with pytest.raises(NLGError, match=r"test.jsonl: line 2: 'answers' must be a non-empty list"):
        run_decode(tmp_path, tokenizer, ["a", "b"], "--ref_type", "squad", rows=rows)
    rows = [SQUAD_ROWS[0], dict(SQUAD_ROWS[1], id="q1")]
    with pytest.raises(NLGError, match=r"test.jsonl: line 2: question id q1 appears twice"):
        run_decode(tmp_path, tokenizer, ["a", "b"], "--ref_type", "squad", rows=rows)


def test_the_encoded_test_file_instead_of_the_formatted_one_is_named(tmp_path, tokenizer):
    encoded = [{"context": tokenizer.encode(r["context"]) + [EOS_ID], "completion": tokenizer.encode(r["completion"])}
               for r in ROWS]
    with pytest.raises(NLGError, match=r"test.jsonl: line 1: 'context' and 'completion' must be text; this looks "
                                       r"like the encoded file \(token ids\): give the formatted one"):
        run_decode(tmp_path, tokenizer, ["pa", "pb", "pc"], "--ref_type", "dart", rows=encoded)
