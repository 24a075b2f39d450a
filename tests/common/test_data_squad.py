"""SQuAD v1.1 in data/prepare.py: one record per question, sampling by whole article, a held-out valid
split, paragraphs cut to fit seq_len (around the answer for training, from the end for test), same bytes
every run. Small hand-made files test the rules; one small run on the reference mirror tests the whole."""
import json
import pathlib
import subprocess
import sys

import pytest

from lora_nlg.data import fetch, format_converting, sampling, squad_truncation
from lora_nlg.data.tokenizer import EOS_ID, encode_records
from lora_nlg.util.errors import NLGError
from testpaths import MIRROR, ROOT, load_script, read_records, sha256s, squad_train_file

prepare = load_script("data/prepare.py")

SQUAD = MIRROR / "data" / "squad"
SPLITS = ("train", "valid", "test")


def qa(qid, question, *answers):
    return {"id": qid, "question": question, "answers": [{"answer_start": s, "text": t} for s, t in answers]}


def squad_file(folder, articles, name="train-v1.1.json"):
    path = pathlib.Path(folder) / name
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return str(path)


ARTICLES = [
    {"title": "Rivers", "paragraphs": [
        {"context": " The Nile flows north.\nIt is long. ", "qas": [
            qa("q1", " Which way does the Nile flow? ", (16, "north"), (16, "north"), (10, "flows north")),
            qa("q2", "What is long?", (23, "It"))]},
        {"context": "The Rhine ends in Rotterdam.",
         "qas": [qa("q3", "Where does the Rhine end?", (18, "Rotterdam"))]}]},
    {"title": "Cats", "paragraphs": [{"context": "Cats purr.", "qas": [qa("q4", "What do cats do?", (5, "purr"))]}]},
]


def test_squad_prompt_strips_paragraph_and_question_and_joins_with_single_spaces():
    assert format_converting.squad_prompt(" The Nile\nflows. ", "  Which way? ") == \
        "Context: The Nile\nflows. Question: Which way? Answer:"
    record = {"context": format_converting.squad_prompt(" a  b ", " q? "), "question": " q? "}
    assert format_converting.squad_paragraph(record) == "a  b"


def test_one_record_per_question_in_file_order_with_every_gold_answer(tmp_path):
    records, notes = format_converting.format_squad(squad_file(tmp_path, ARTICLES))
    assert records[0] == {
        "context": "Context: The Nile flows north.\nIt is long. Question: Which way does the Nile flow? Answer:",
        "completion": "north", "id": "q1", "question": " Which way does the Nile flow? ", "title": "Rivers",
        "answers": [{"text": "north", "answer_start": 16}, {"text": "north", "answer_start": 16},
                    {"text": "flows north", "answer_start": 10}]}
    assert [(r["id"], r["title"], r["completion"]) for r in records] == [
        ("q1", "Rivers", "north"), ("q2", "Rivers", "It"), ("q3", "Rivers", "Rotterdam"), ("q4", "Cats", "purr")]
    assert records[2]["context"] == "Context: The Rhine ends in Rotterdam. Question: Where does the Rhine end? Answer:"
    assert notes == []


def test_official_dev_file_first_question():
    records, notes = format_converting.format_squad(str(SQUAD / "dev-v1.1.json"))
    assert len(records) == 10570 and notes == []
    # dev-v1.1.json, article 1 (Super_Bowl_50), paragraph 1, question 1: three identical gold answers
    assert records[0]["context"].startswith("Context: Super Bowl 50 was an American football game to determine")
    assert records[0]["context"].endswith("Arabic numerals 50. Question: Which NFL team represented the AFC at "
                                          "Super Bowl 50? Answer:")
    assert records[0]["answers"] == [{"text": "Denver Broncos", "answer_start": 177}] * 3
    assert (records[0]["completion"], records[0]["id"]) == ("Denver Broncos", "56be4db0acb8001400a502ec")


def test_an_answer_start_that_misses_its_text_is_counted_in_a_note(tmp_path):
    article = {"title": "T", "paragraphs": [
        {"context": "red green red", "qas": [qa("q", "Q?", (1, "red"), (4, "green"))]}]}
    records, notes = format_converting.format_squad(squad_file(tmp_path, [article]))
    assert notes == ["1 gold answer(s) whose answer_start does not point at their text; "
                     "located by the first occurrence of the text where truncation needs them"]
    assert format_converting.answer_span("red green red", records[0]["answers"][0]) == (0, 3, False)
    assert format_converting.answer_span("red green red", records[0]["answers"][1]) == (4, 9, True)


def q4(articles):
    return articles[1]["paragraphs"][0]["qas"][0]


def broken(change):
    articles = json.loads(json.dumps(ARTICLES))
    change(articles)
    return articles


@pytest.mark.parametrize("articles, problem", [
    (broken(lambda a: a[0]["paragraphs"][1]["qas"][0].update(answers=[])),
     "article 1 paragraph 2 question q3: no answers"),
    (broken(lambda a: q4(a)["answers"][0].update(text="meow")),
     "article 2 paragraph 1 question q4: answer 'meow' is not in the paragraph"),
    (broken(lambda a: q4(a)["answers"][0].update(answer_start="5")),
     "article 2 paragraph 1 question q4: an answer needs a non-empty text and an answer_start >= 0"),
    (broken(lambda a: q4(a).update(id="q2")), "article 2 paragraph 1 question q2: duplicate"),
    (broken(lambda a: q4(a).pop("question")), "article 2 paragraph 1 question q4: missing"),
    (broken(lambda a: q4(a).update(question=" ")), "article 2 paragraph 1 question q4: empty"),
    (broken(lambda a: a[1]["paragraphs"][0].update(context="  ")), "article 2 paragraph 1: empty context"),
    (broken(lambda a: a[1].pop("title")), "article 2: missing key 'title'"),
])
def test_bad_squad_files_name_the_file_and_the_question(tmp_path, articles, problem):
    path = squad_file(tmp_path, articles)
    with pytest.raises(NLGError, match=f"^{path}: {problem}"):
        format_converting.format_squad(path)


@pytest.mark.parametrize("content, problem", [
    ('{"version": "1.1"}', "missing key 'data'"),
    ('{"data": [\n{]}', "line 2: malformed JSON"),
    ('[]', "expected a JSON dict at the top level"),
])
def test_bad_squad_json(file_error, content, problem):
    file_error(format_converting.format_squad, "dev-v1.1.json", content, problem)


# --- truncation -------------------------------------------------------------------------------------------------

WORDS = [f"w{i}x" for i in range(120)]  # distinct words, so a window's place in the paragraph is unambiguous


def long_record(folder, answer_word, other_answer_words=()):
    """The record of a question on a 120-word paragraph whose answers are the given words."""
    paragraph = " ".join(WORDS)
    answers = [(paragraph.index(f" w{i}x ") + 1, f"w{i}x") for i in (answer_word, *other_answer_words)]
    return format_converting.format_squad(squad_file(folder, [{"title": "T", "paragraphs": [
        {"context": paragraph, "qas": [qa("long", "Which word?", *answers)]}]}]))[0][0]


def ids_of(tokenizer, record, paragraph):
    return tokenizer.encode(format_converting.squad_prompt(paragraph, record["question"])) + [EOS_ID]


def oracle_around_answer(tokenizer, record, budget):
    """One word at a time: drop from the side with more words left (the end on a tie) until it fits."""
    words = format_converting.squad_paragraph(record).split(" ")
    at = words.index(record["completion"])
    before, after = words[:at], words[at + 1:]
    while len(ids_of(tokenizer, record, " ".join(before + [record["completion"]] + after))) > budget:
        before, after = (before[1:], after) if len(before) > len(after) else (before, after[:-1])
    return " ".join(before + [record["completion"]] + after)


def oracle_beginning(tokenizer, record, budget):
    words = format_converting.squad_paragraph(record).split(" ")
    while len(ids_of(tokenizer, record, " ".join(words))) > budget:
        words = words[:-1]
    return " ".join(words)


@pytest.mark.parametrize("answer_word", [3, 60, 110])
def test_training_window_keeps_the_answer_and_cuts_the_far_end_first(tokenizer, tmp_path, answer_word):
    record = long_record(tmp_path, answer_word)
    fitted, rows, counts = squad_truncation.fit_records([record], tokenizer, 128, 16, keep_answer=True, source="f")
    (row,), (out,) = rows, fitted
    assert out["truncated"] is True and counts == {"truncated": 1, "answer_start_mismatches": 0}
    assert len(row["context"]) <= 128 - 16 and len(row["context"]) + len(row["completion"]) <= 128
    assert format_converting.squad_paragraph(out) == oracle_around_answer(tokenizer, record, 128 - 16)
    assert row == {"context": tokenizer.encode(out["context"]) + [EOS_ID],
                   "completion": tokenizer.encode(" " + record["completion"]) + [EOS_ID]}
    assert {k: v for k, v in out.items() if k not in ("context", "truncated")} == \
           {k: v for k, v in record.items() if k != "context"}


def test_training_budget_leaves_room_for_a_long_completion(tokenizer, tmp_path):
    record = long_record(tmp_path, 60)
    record["completion"] = " ".join(["w60x"] * 10)  # a completion longer than answer_tokens
    (row,) = squad_truncation.fit_records([record], tokenizer, 128, 16, keep_answer=True, source="f")[1]
    assert len(row["context"]) + len(row["completion"]) <= 128 and len(row["completion"]) > 16


def test_test_window_keeps_the_beginning_and_counts_questions_that_lost_every_answer(tokenizer, tmp_path):
    records = [long_record(tmp_path, 110), long_record(tmp_path, 110, (2,)), long_record(tmp_path, 1)]
    fitted, rows, counts = squad_truncation.fit_records(records, tokenizer, 96, 32, keep_answer=False, source="f")
    expected = oracle_beginning(tokenizer, records[0], 96 - 32)
    assert [format_converting.squad_paragraph(out) for out in fitted] == [expected] * 3
    assert "w110x" not in expected and "w2x" in expected
    assert counts == {"truncated": 3, "answer_start_mismatches": 0, "answers_cut_off": 1}
    assert all(len(row["context"]) <= 64 for row in rows)


def test_rows_that_fit_are_left_alone(tokenizer, tmp_path):
    records = format_converting.format_squad(squad_file(tmp_path, ARTICLES))[0]
    fitted, rows, counts = squad_truncation.fit_records(records, tokenizer, 512, 32, keep_answer=True, source="f")
    assert fitted == [{**record, "truncated": False} for record in records]
    assert rows == encode_records(tokenizer, records) and counts["truncated"] == 0


def test_a_missed_answer_start_is_located_by_text_and_counted(tokenizer, tmp_path):
    record = long_record(tmp_path, 70)
    record["answers"][0]["answer_start"] = 0
    fitted, _, counts = squad_truncation.fit_records([record], tokenizer, 128, 16, keep_answer=True, source="f")
    assert counts["answer_start_mismatches"] == 1 and "w70x" in format_converting.squad_paragraph(fitted[0])


def test_a_question_too_long_for_any_window_is_an_error(tokenizer, tmp_path):
    record = long_record(tmp_path, 60)
    record["question"] = " ".join(WORDS[:60])
    record["context"] = format_converting.squad_prompt(" ".join(WORDS), record["question"])
    with pytest.raises(NLGError, match="^train.json: question long: its prompt needs .* over the budget of 112; raise"):
        squad_truncation.fit_records([record], tokenizer, 128, 16, keep_answer=True, source="train.json")


# --- sampling by article ----------------------------------------------------------------------------------------

def article_records(n_articles, questions=3):
    return [{"title": f"a{i}", "context": f"p{i}-{q % 2}", "completion": "x"} for i in range(n_articles)
            for q in range(questions)]


def test_articles_are_kept_or_held_out_whole_and_deterministically():
    records = article_records(40)
    kept, counts = sampling.sample_inputs(records, sampling.squad_stratum, 0.25, 110, "squad/train",
                                          sampling.squad_article)
    titles = {records[i]["title"] for i in kept}
    assert len(titles) == 10 and len(kept) == 30 and kept == sorted(kept)
    assert counts == {"article": sampling.StratumCount(10, 30, 40, 120)}
    train, valid = sampling.hold_out_articles(records, 0.05, 110, "squad/holdout")
    assert len({r["title"] for r in valid}) == 2 and len(valid) == 6 and len(train) == 114
    assert {r["title"] for r in train}.isdisjoint(r["title"] for r in valid)
    assert sampling.hold_out_articles(records, 0.05, 110, "squad/holdout") == (train, valid)
    assert sampling.hold_out_articles(records, 0.05, 111, "squad/holdout") != (train, valid)
    assert len(sampling.hold_out_articles(article_records(5), 0.05, 110, "squad/holdout")[1]) == 3  # at least one


# --- data/prepare.py on the reference mirror ---------------------------------------------------------------------

def run_prepare(out, *extra, fraction="0.02"):
    args = prepare.parse_args(["--dataset", "squad", "--source", str(MIRROR), "--fraction", fraction,
                               "--out", str(out), "--vocab-dir", str(out / "vocab"), *extra])
    return prepare.prepare(args)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    first, second = tmp_path_factory.mktemp("squad_1"), tmp_path_factory.mktemp("squad_2")
    manifest = run_prepare(first)
    run_prepare(second)
    full = {"train": format_converting.format_squad(str(MIRROR / squad_train_file()))[0],
            "test": format_converting.format_squad(str(SQUAD / "dev-v1.1.json"))[0]}
    return first, second, manifest, full


def test_two_runs_give_byte_identical_outputs(prepared):
    first, second, manifest, _ = prepared
    assert set(sha256s(first)) == {*(f"{s}{x}.jsonl" for s in SPLITS for x in ("", "_formatted")), "manifest.json"}
    assert sha256s(first) == sha256s(second)
    assert {name: digest for name, digest in sha256s(first).items() if name != "manifest.json"} == manifest["files"]


def test_splits_hold_whole_articles_with_every_question_and_answer(prepared):
    out, _, manifest, full = prepared
    by_title = {}
    for source in ("train", "test"):
        for record in full[source]:
            by_title.setdefault((source, record["title"]), []).append(record)
    titles = {}
    for split in SPLITS:
        rows = read_records(out / f"{split}_formatted.jsonl")
        source = "test" if split == "test" else "train"
        titles[split] = list(dict.fromkeys(row["title"] for row in rows))
        expected = [record for title in titles[split] for record in by_title[(source, title)]]
        assert [{k: v for k, v in row.items() if k not in ("context", "truncated")} for row in rows] == \
               [{k: v for k, v in record.items() if k != "context"} for record in expected], split
        counts = manifest["splits"][split]
        assert (counts["inputs"], counts["references"]) == (len(titles[split]), len(rows))
    assert set(titles["train"]).isdisjoint(titles["valid"])
    articles = {"train": 442 - 22, "valid": 22, "test": 48}  # valid: round(0.05 * 442) articles of the train file
    for split, n in articles.items():
        assert manifest["splits"][split]["inputs_full"] == n
        assert len(titles[split]) == max(1, round(0.02 * n))
    assert manifest["splits"]["test"]["references_full"] == 10570
    assert manifest["splits"]["train"]["references_full"] + manifest["squad"]["valid_held_out"]["questions"] == 87599


def test_encoded_rows_are_parallel_and_every_context_fits_the_budget(prepared, tokenizer):
    out, _, manifest, _ = prepared
    for split in SPLITS:
        rows = read_records(out / f"{split}_formatted.jsonl")
        encoded = read_records(out / f"{split}.jsonl")
        assert len(rows) == len(encoded) == manifest["splits"][split]["truncation"]["questions"]
        for row, ids in list(zip(rows, encoded))[::11]:
            assert ids == {"context": tokenizer.encode(row["context"]) + [EOS_ID],
                           "completion": tokenizer.encode(" " + row["completion"]) + [EOS_ID]}
        assert all(len(ids["context"]) <= 512 - 32 for ids in encoded)
        if split != "test":
            assert all(len(ids["context"]) + len(ids["completion"]) <= 512 for ids in encoded)


def test_manifest_records_the_settings_and_the_rebuilt_train_file(prepared):
    _, _, manifest, _ = prepared
    settings = manifest["squad"]
    assert (settings["seq_len"], settings["answer_tokens"], settings["valid_fraction"]) == (512, 32, 0.05)
    if squad_train_file() == fetch.SQUAD_TRAIN_REBUILT.path:
        assert "train-v1.1.reconstructed.json" in settings["train_rebuilt_note"]
    else:  # the official file (a mirror or the test cache filled from the official sources)
        assert settings["train_rebuilt_note"] is None
    assert {f["file"] for f in manifest["raw_files"]} >= {"data/squad/dev-v1.1.json", squad_train_file()}


def test_short_seq_len_cuts_real_paragraphs_and_keeps_training_answers(tmp_path, capsys):
    manifest = run_prepare(tmp_path, "--seq_len", "160", "--answer_tokens", "24")
    printed = capsys.readouterr().out
    assert "NOTE: the official SQuAD v1.1 train file is not in the source" in printed
    assert "articles kept/all (questions kept)" in printed
    for split in SPLITS:
        rows = read_records(tmp_path / f"{split}_formatted.jsonl")
        encoded = read_records(tmp_path / f"{split}.jsonl")
        cut = [row for row in rows if row["truncated"]]
        assert len(cut) == manifest["splits"][split]["truncation"]["truncated"] > 0, split
        assert f"squad {split}: paragraph cut in {len(cut)} of {len(rows)} prompts" in printed
        assert all(len(ids["context"]) <= 136 for ids in encoded)
        if split != "test":
            assert all(len(ids["context"]) + len(ids["completion"]) <= 160 for ids in encoded)
            assert all(row["completion"] in format_converting.squad_paragraph(row) for row in cut)
    # a test paragraph keeps its beginning; a question lost its answers if they all end beyond the cut
    dev = {record["id"]: format_converting.squad_paragraph(record)
           for record in format_converting.format_squad(str(SQUAD / "dev-v1.1.json"))[0]}
    lost = 0
    for row in read_records(tmp_path / "test_formatted.jsonl"):
        kept = format_converting.squad_paragraph(row)
        assert dev[row["id"]].startswith(kept) and row["truncated"] == (kept != dev[row["id"]])
        lost += all(format_converting.answer_span(dev[row["id"]], answer)[1] > len(kept) for answer in row["answers"])
    assert manifest["splits"]["test"]["truncation"]["answers_cut_off"] == lost > 0


def test_answer_test_window_cuts_test_paragraphs_around_the_first_gold_answer(tmp_path, capsys):
    """--test_window answer (the cpu demo's oracle passage): test prompts are cut like training ones, so each cut
    test paragraph is a window of the original holding its first gold answer; the manifest says so."""
    manifest = run_prepare(tmp_path, "--seq_len", "128", "--answer_tokens", "32", "--test_window", "answer")
    assert manifest["squad"]["test_window"] == "answer"
    dev = {record["id"]: format_converting.squad_paragraph(record)
           for record in format_converting.format_squad(str(SQUAD / "dev-v1.1.json"))[0]}
    rows = read_records(tmp_path / "test_formatted.jsonl")
    cut = [row for row in rows if row["truncated"]]
    assert len(cut) == manifest["splits"]["test"]["truncation"]["truncated"] > len(rows) // 2
    for row in cut:
        kept = format_converting.squad_paragraph(row)
        assert kept in dev[row["id"]] and kept != dev[row["id"]] and row["answers"][0]["text"].strip() in kept
    assert all(len(ids["context"]) <= 96 for ids in read_records(tmp_path / "test.jsonl"))


@pytest.mark.parametrize("argv, problem", [
    (["--dataset", "e2e", "--seq_len", "256"], "--seq_len only applies to --dataset squad"),
    (["--dataset", "webnlg", "--test_window", "answer"], "--test_window only applies to --dataset squad"),
    (["--dataset", "dart", "--valid_fraction", "0.1"], "--valid_fraction only applies to --dataset squad"),
    (["--dataset", "squad", "--seq_len", "32"], "--answer_tokens 32 leaves no room for a prompt in --seq_len 32"),
    (["--dataset", "squad", "--valid_fraction", "1"], "argument --valid_fraction: 1: must be in (0, 1)"),
])
def test_squad_options_are_checked(argv, problem):
    result = subprocess.run([sys.executable, str(ROOT / "data/prepare.py"), *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(f"error: {problem}"), result.stderr
