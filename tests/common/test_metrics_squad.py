"""SQuAD v1.1 exact match / F1: each normalisation rule by hand, the scoring rules, the real dev set, the CLI."""
import json

import pytest

from lora_nlg.metrics import squad
from lora_nlg.util.errors import NLGError
from testpaths import MIRROR, run_script

DEV = MIRROR / "data" / "squad" / "dev-v1.1.json"


def dataset(*questions):
    """One article, one paragraph per question; questions: (id, [gold texts])."""
    paragraphs = [{"context": "c", "qas": [{"id": qid, "question": "q?", "answers": [{"text": t, "answer_start": 0}
                                                                                    for t in golds]}]}
                  for qid, golds in questions]
    return [{"title": "T", "paragraphs": paragraphs}]


@pytest.mark.parametrize("text, normalised", [
    ("Denver BRONCOS", "denver broncos"),  # case
    ("U.S.", "us"),  # inner punctuation goes, without a space
    ("rock-'n'-roll!", "rocknroll"),
    ("$1,000.50 (approx.)", "100050 approx"),
    ("Arab–Israeli “war”", "arab–israeli “war”"),  # not string.punctuation: kept
    ("a cat", "cat"),
    ("An apple", "apple"),
    ("THE end", "end"),  # lower-cased first, so capital articles go too
    ("cat a dog an eel the fox", "cat dog eel fox"),
    ("theater another banana", "theater another banana"),  # articles only as whole words
    ("the-end", "theend"),  # punctuation goes before articles: no longer a whole word
    ("(the) end", "end"),  # ... and can expose one
    ("  big \t\n cat  ", "big cat"),  # whitespace collapsed and stripped
    ("...", ""),
])
def test_normalize_answer_rules(text, normalised):
    assert squad.normalize_answer(text) == normalised


def test_exact_match_after_normalisation():
    assert squad.exact_match("the Denver Broncos.", "denver broncos")
    assert not squad.exact_match("Denver Broncos team", "Denver Broncos")


def test_f1_partial_overlap_by_hand():
    # "denver broncos team" vs "denver broncos": 2 shared, P = 2/3, R = 1, F1 = 2 PR / (P + R) = 0.8
    assert squad.f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    # tokens count with multiplicity: [x, y, y] vs [y, y, y, z]: 2 shared, P = 2/3, R = 1/2, F1 = 4/7
    assert squad.f1("x y y", "y y y z") == pytest.approx(4 / 7)
    assert squad.f1("Carolina Panthers", "Denver Broncos") == 0


def test_empty_texts_exact_match_but_f1_zero():
    # the official quirk: "" and "." both normalise to "", equal, but share no token
    assert squad.exact_match("", ".") and squad.f1("", ".") == 0
    assert not squad.exact_match("", "Denver") and squad.f1("", "Denver") == 0


def test_best_over_golds_per_metric():
    golds = ["Denver", "Denver Broncos", "Broncos of Denver"]
    assert squad.best_over_golds(squad.exact_match, "denver", golds) is True
    # vs "Denver": 0; vs "Denver Broncos": P 1, R 1/2 -> 2/3; vs "Broncos of Denver": P 1, R 1/3 -> 1/2
    assert squad.best_over_golds(squad.f1, "the Broncos", golds) == pytest.approx(2 / 3)
    assert squad.best_over_golds(squad.exact_match, "the Broncos", golds) is False


def test_evaluate_means_over_every_question(capsys):
    data = dataset(("q1", ["Denver Broncos"]), ("q2", ["Denver Broncos"]), ("q3", ["x"]), ("q4", ["Panthers"]))
    predictions = {"q1": "denver broncos", "q2": "the Denver Broncos team", "q4": "Carolina", "other": "x"}
    scores = squad.evaluate(data, predictions)
    # EM: q1 only -> 100 * 1/4; F1: q1 1 + q2 0.8 (q3 unanswered, q4 no overlap) -> 100 * 1.8 / 4
    assert scores == {"exact_match": 25.0, "f1": pytest.approx(45.0)}
    assert capsys.readouterr().err == "Unanswered question q3 will receive score 0.\n"


def test_extra_predictions_are_ignored(capsys):
    data = dataset(("q1", ["a b"]))
    assert squad.evaluate(data, {"q1": "b"}) == squad.evaluate(data, {"q1": "b", "zz": "a b", "q2": "b"})
    assert capsys.readouterr().err == ""


def test_many_unanswered_questions_are_one_summary_line(capsys):
    count = squad.MAX_UNANSWERED_LINES + 1
    data = dataset(*[(f"q{i}", ["a"]) for i in range(count)])
    assert squad.evaluate(data, {}) == {"exact_match": 0.0, "f1": 0.0}
    assert capsys.readouterr().err == f"{count} unanswered questions will receive score 0 (the first: q0).\n"


@pytest.fixture(scope="module")
def dev():
    return squad.read_dataset(DEV)


def all_questions(articles):
    return [qa for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def without_words(text):
    return not any(c.isalnum() for c in text)


def test_dev_set_first_gold_answers_score_100(dev):
    questions = all_questions(dev)
    assert len(questions) == 10570
    predictions = {qa["id"]: qa["answers"][0]["text"] for qa in questions}
    assert squad.evaluate(dev, predictions) == {"exact_match": 100.0, "f1": 100.0}


def test_dev_set_empty_predictions(dev):
    # EM is not 0: three questions have "." among their golds, which normalises to "" like the prediction
    questions = all_questions(dev)
    dotted = [qa["id"] for qa in questions if any(without_words(a["text"]) for a in qa["answers"])]
    assert len(dotted) == 3
    scores = squad.evaluate(dev, {qa["id"]: "" for qa in questions})
    assert scores == {"exact_match": 100.0 * 3 / 10570, "f1": 0.0}


def test_dev_set_second_gold_answers(dev, capsys):
    questions = all_questions(dev)
    predictions = {qa["id"]: qa["answers"][1]["text"] for qa in questions if len(qa["answers"]) > 1}
    single = len(questions) - len(predictions)  # unanswered: the questions with one gold answer
    no_words = sum(without_words(qa["answers"][1]["text"]) for qa in questions if len(qa["answers"]) > 1)
    assert (single, no_words) == (3, 1)
    scores = squad.evaluate(dev, predictions)
    # every answered question matches itself exactly; its F1 is 1 unless the gold has no word (".")
    assert scores["exact_match"] == pytest.approx(100.0 * (10570 - single) / 10570)
    assert scores["f1"] == pytest.approx(100.0 * (10570 - single - no_words) / 10570)
    assert 99.9 < scores["f1"] < scores["exact_match"] < 100.0  # EM > F1 is possible: "." scores EM 1, F1 0
    assert capsys.readouterr().err.count("Unanswered question") == single


def write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def squad_file(path, articles, version="1.1"):
    return write(path, {"version": version, "data": articles})


@pytest.mark.parametrize("content, problem", [
    ("{", "not JSON"),
    ([], "not a SQuAD v1.1 dataset (expected an object with a 'data' list"),
    ({"version": "1.1", "data": [{"title": "T"}]}, "(data[0] has no 'paragraphs' list)"),
    ({"version": "1.1", "data": [{"paragraphs": [{"context": "c"}]}]}, "(data[0].paragraphs[0] has no 'qas' list)"),
    ({"version": "1.1", "data": [{"paragraphs": [{"qas": [{"answers": []}]}]}]}, "qas[0] has no string 'id'"),
    ({"version": "1.1", "data": dataset(("q1", []))}, "question q1 needs a non-empty 'answers' list"),
    ({"version": "1.1", "data": []}, "no questions to score"),
])
def test_read_dataset_errors(tmp_path, content, problem):
    path = write(tmp_path / "d.json", content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(NLGError) as err:
        squad.read_dataset(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_read_dataset_other_version_warns_and_reads(tmp_path, capsys):
    path = squad_file(tmp_path / "d.json", dataset(("q1", ["a"])), version="2.0")
    assert squad.read_dataset(path) == dataset(("q1", ["a"]))
    assert capsys.readouterr().err.startswith(f"warning: {path}: expected a SQuAD v1.1 dataset, got version '2.0'")


def test_read_predictions_errors(tmp_path):
    with pytest.raises(NLGError, match=r"p.json: predictions must be a JSON object of question id -> answer "
                                       r"string, got list"):
        squad.read_predictions(write(tmp_path / "p.json", ["a"]))
    with pytest.raises(NLGError, match=r"p.json: the prediction for q2 is int, not a string"):
        squad.read_predictions(write(tmp_path / "p.json", {"q1": "a", "q2": 3}))


def run_cli(*args):
    return run_script("eval/squad_eval.py", *args)


def test_cli_prints_the_official_line_and_writes_json(tmp_path):
    data = squad_file(tmp_path / "d.json", dataset(("q1", ["Denver Broncos"]), ("q2", ["Panthers"])))
    predictions = write(tmp_path / "p.json", {"q1": "the Denver Broncos team", "q2": "Panthers"})
    result = run_cli(data, predictions, "--json", tmp_path / "out" / "scores.json")
    assert result.returncode == 0, result.stderr
    # EM: 100 * 1/2; F1: 100 * (0.8 + 1) / 2
    assert result.stdout == '{"exact_match": 50.0, "f1": 90.0}\n'
    assert json.loads((tmp_path / "out" / "scores.json").read_text()) == {"exact_match": 50.0, "f1": 90.0}


def assert_one_line_error(result, message):
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {message}\n" and result.stdout == ""


def test_cli_errors(tmp_path):
    data = squad_file(tmp_path / "d.json", dataset(("q1", ["a"])))
    predictions = write(tmp_path / "p.json", {"q1": "a"})
    assert_one_line_error(run_cli(tmp_path / "nope.json", predictions),
                          f"{tmp_path / 'nope.json'}: cannot read (No such file or directory)")
    bad = write(tmp_path / "bad.json", "[1, 2")
    assert_one_line_error(run_cli(data, bad), f"{bad}: not JSON (Expecting ',' delimiter at line 1)")
    assert_one_line_error(run_cli(predictions, predictions), f"{predictions}: not a SQuAD v1.1 dataset "
                          "(expected an object with a 'data' list of articles)")
    # a dataset file given as predictions: "version" maps to a string, "data" to a list
    assert_one_line_error(run_cli(data, data), f"{data}: the prediction for data is list, not a string")
