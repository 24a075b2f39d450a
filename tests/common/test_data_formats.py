"""Formatting raw E2E / WebNLG / DART into microsoft/LoRA's context / completion texts; bad input errors.

Expected records below were written by hand from the raw files in the reference mirror, following
microsoft/LoRA's format_converting_{e2e,webnlg,dart}.py."""
import json

import pytest

from lora_nlg.data import batching, format_converting
from lora_nlg.data.tokenizer import EOS_ID, encode_records
from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import read_jsonl, write_jsonl
from testpaths import MIRROR

DATA = MIRROR / "data"


def records_of(records, context):
    return [r for r in records if r["context"] == context]


def test_e2e_lines_are_stripped_then_split_on_double_bar():
    records, notes = format_converting.format_e2e(str(DATA / "e2e/train.txt"))
    assert len(records) == 42061 and notes == []
    # raw: "name : The Vaults | ... | near : Café Adriatic||The Vaults pub ... at £ 30 . \n"
    assert records[0] == {
        "context": "name : The Vaults | Type : pub | price : more than £ 30 | customer rating : 5 out of 5 "
                   "| near : Café Adriatic",
        "completion": "The Vaults pub near Café Adriatic has a 5 star rating . Prices start at £ 30 .",
    }
    test, _ = format_converting.format_e2e(str(DATA / "e2e/test.txt"))
    blue_spice = records_of(test, "name : Blue Spice | Type : coffee shop | area : city centre")
    assert [r["completion"] for r in blue_spice] == [
        "A coffee shop in the city centre area called Blue Spice .", "Blue Spice is a coffee shop in city centre ."]


def test_webnlg_keeps_good_lexicalisations_with_category_and_seen_flag():
    train, notes = format_converting.format_webnlg(str(DATA / "webnlg_challenge_2017/train.json"))
    assert len(train) == 18025
    assert notes == ["77 lexicalisations not marked 'good' skipped, as microsoft/LoRA's converter does; "
                     "entries left without any reference: 5"]
    assert train[0] == {"context": 'Aarhus_Airport : cityServed : "Aarhus, Denmark"',
                        "completion": "The Aarhus is the airport of Aarhus, Denmark.", "category": "Airport",
                        "seen": True}
    # entry 1991: two triples, five 'good' lexicalisations and one 'toFix' ("... New Hampshire (US(.")
    shepard = records_of(train, "Alan_Shepard : birthPlace : New_Hampshire | "
                                "Alan_Shepard : nationality : United_States")
    assert [r["completion"] for r in shepard] == [
        "Alan Shepard is an American citizen who was born in New Hampshire.",
        "Alan Shepard was born in the American state of New Hampshire.",
        "Alan Shepard is an American who was born in New Hampshire.",
        "Alan Shepard is a US citizen born in New Hampshire.",
        "Alan Shepard has a US nationality and was born in the New Hampshire."]
    assert {(r["category"], r["seen"]) for r in shepard} == {("Astronaut", True)}

    test, _ = format_converting.format_webnlg(str(DATA / "webnlg_challenge_2017/test.json"))
    assert len(test) == 4928
    deer = records_of(test, "Aaron_Deer : genre : Psychedelia | Aaron_Deer : instrument : Guitar")  # entry 1280
    assert [(r["completion"], r["category"], r["seen"]) for r in deer] == [
        ("Guitarist Aaron Deer plays Psychedelia.", "Artist", False),
        ("Aaron Deer plays the guitar and performs Psychedelia music.", "Artist", False),
        ("Guitarist Aaron Deer performs music from the Psychedelia genre.", "Artist", False)]


def test_dart_lower_cases_predicates_and_keeps_every_annotation():
    test, notes = format_converting.format_dart(str(DATA / "dart/dart-v1.1.1-full-test.json"))
    assert len(test) == 12552
    assert test[0] == {
        "context": "Hawaii Five-O : notes : Episode: The Flight of the Jewels | [TABLECONTEXT] : [title] : "
                   "Jeff Daniels | [TABLECONTEXT] : title : Hawaii Five-O",
        "completion": "Jeff Daniels played in the Hawaii Five-O episode The Flight of the Jewels"}
    # entry 116 has an empty second annotation: kept, as the reference converter does, and reported
    channel = records_of(test, "reserved (previously G721) : no._of_channels : 1 | reserved (previously G721) : "
                               "clock_rate_(hz) : 8000")
    assert [r["completion"] for r in channel] == ["reserved (previously G721) has 1 channel and 8000 Hz clock rate", ""]
    assert notes == ["1 empty reference text(s) kept, as microsoft/LoRA's converter does"]
    dev, _ = format_converting.format_dart(str(DATA / "dart/dart-v1.1.1-full-dev.json"))
    assert dev[0] == {"context": "Mars Hill College : joined : 1973 | "
                                 "Mars Hill College : location : Mars Hill, North Carolina",
                      "completion": "A school from Mars Hill, North Carolina, joined in 1973."}


def test_encoding_is_gpt2_encode_with_bos_and_eos(tokenizer):
    # "Hello" = 15496, " world" = 995 (GPT-2's best-known ids); the completion gets a leading space
    assert encode_records(tokenizer, [{"context": "Hello", "completion": "world"}]) == [
        {"context": [15496, EOS_ID], "completion": [995, EOS_ID]}]


# every reader of a data file: the error names the file (and line, where there is one) and the problem
E2E_TXT = (format_converting.format_e2e, "train.txt")
DART_JSON = (format_converting.format_dart, "dart.json")
FORMATTED = (format_converting.read_formatted, "train_formatted.jsonl")
ENCODED = (batching.load_encoded, "train.jsonl")
BAD_FILES = [
    (*E2E_TXT, "a||b\nno separator here\n", "line 2: expected 'meaning representation||reference text'"),
    (*E2E_TXT, "a||b||c\n", "line 1: expected"),
    (*E2E_TXT, "||text\n", "line 1: expected"),
    (*E2E_TXT, "a||b\n\n", "line 2: expected"),
    (*E2E_TXT, "a||   \n", "input 'a' has only empty references"),
    (*DART_JSON, '[{"tripleset": [["a", "P"]], "annotations": []}]',
     r"entry 1: a triple is not \[subject, predicate, object\]"),
    (*DART_JSON, '[{"tripleset": [["a", "P", "b"]]}]', "entry 1: missing key 'annotations'"),
    (*DART_JSON, '[{"tripleset": [["a", "P", "b"]], "annotations": [{"source": "x"}]}]', "entry 1: missing key 'text'"),
    (*DART_JSON, '{"tripleset": []}', "expected a JSON list at the top level"),
    (*DART_JSON, '[{"tripleset": [["a", "P", "b"]],\n "annotations": [}]', "line 2: malformed JSON"),
    (*FORMATTED, '{"context": "a : p : b", "completion": "x"}\n{"context": "a"\n', "line 2: malformed JSON"),
    (*FORMATTED, '{"context": "a : p : b"}\n', "line 1: missing key 'completion'"),
    (*FORMATTED, '[1, 2]\n', "line 1: expected a JSON object, got list"),
    (*FORMATTED, '{"context": "a : p : b", "completion": 3}\n', "line 1: 'context' and 'completion' must be strings"),
    (*ENCODED, '{"context": [1], "completion": [2]}\n{"context": [1], "completion": [2}\n',
     "line 2: malformed JSON"),
    (*ENCODED, '{"context": [1]}\n', "line 1: missing key 'completion'"),
    (*ENCODED, '{"context": [1], "completion": []}\n', "line 1: empty 'completion'"),
    (*ENCODED, '{"context": [1, "a"], "completion": [2]}\n',
     "line 1: 'context' must be a list of token ids"),
]


@pytest.mark.parametrize("reader, name, content, problem", BAD_FILES)
def test_bad_files_are_named_with_their_problem(file_error, reader, name, content, problem):
    file_error(reader, name, content, problem)


def webnlg_file(tmp_path, entry):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"entries": [{"1": entry}]}), encoding="utf-8")
    return path


GOOD_ENTRY = {"category": "Food", "modifiedtripleset": [{"subject": "a", "property": "p", "object": "b"}],
              "lexicalisations": [{"comment": "good", "lex": "A p b."}]}


@pytest.mark.parametrize("change, problem", [
    ({"category": None}, "entry 1: category must be strings"),
    ({"modifiedtripleset": []}, "entry 1: empty triple set"),
    ({"modifiedtripleset": [{"subject": "a", "object": "b"}]}, "entry 1: missing key 'property'"),
    ({"lexicalisations": "A p b."}, "entry 1: 'lexicalisations' must be a list"),
    ({"lexicalisations": [{"comment": "good", "lex": ""}]}, "input 'a : p : b' has only empty references"),
])
def test_bad_webnlg_entries(tmp_path, change, problem):
    path = webnlg_file(tmp_path, {**GOOD_ENTRY, **change})
    with pytest.raises(NLGError, match=f"^{path}: {problem}"):
        format_converting.format_webnlg(str(path))


def test_good_synthetic_webnlg_entry(tmp_path):
    records, notes = format_converting.format_webnlg(str(webnlg_file(tmp_path, GOOD_ENTRY)))
    assert records == [{"context": "a : p : b", "completion": "A p b.", "category": "Food", "seen": True}]


def test_triple_contexts_are_checked(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_jsonl(path, [{"context": "a : p : b", "completion": "x"}, {"context": "a p b", "completion": "y"}])
    records, _ = format_converting.read_formatted(str(path))
    with pytest.raises(NLGError, match=f"^{path}: line 2: context is not"):
        format_converting.check_triple_contexts(records, str(path))


def test_jsonl_round_trip_is_ascii_json_dumps(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"context": "Café £", "completion": "x"}])
    assert path.read_bytes() == b'{"context": "Caf\\u00e9 \\u00a3", "completion": "x"}\n'
    assert list(read_jsonl(path)) == [(1, {"context": "Café £", "completion": "x"})]
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]  # no temporary file left behind
