"""Raw E2E / WebNLG 2017 / DART / SQuAD v1.1 files -> records {"context": str, "completion": str, ...}.

The context and completion texts are exactly what microsoft/LoRA's
`examples/NLG/src/format_converting_{e2e,webnlg,dart}.py` write, so encoded ids, references and
scores stay comparable with the reference:
- E2E: each line is `MR||text`; the line is stripped of surrounding whitespace, then split.
- WebNLG: the `modifiedtripleset` as `subject : property : object` joined by ` | `, the property
  kept verbatim; only lexicalisations whose comment is 'good' become references. Extra keys:
  `category` and `seen` (the category is one of the 10 training categories; the reference's
  `cate` flag), which decode needs to score seen / unseen / all.
- DART: the `tripleset` likewise, with the predicate lower-cased; every annotation is a reference.
- SQuAD v1.1 (no reference converter): one record per question, context `squad_prompt(paragraph,
  question)`, completion the first gold answer; extra keys `id`, `question`, `title` and `answers`
  (every gold answer as in the source), which sampling by article and scoring need.
Records come in file order, one per reference. Each converter also returns notes: facts about the
data that change what is kept (skipped lexicalisations, empty texts), printed and put in the manifest.
"""
import json

from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import read_jsonl

WEBNLG_SEEN_CATEGORIES = frozenset((
    "Airport", "Astronaut", "Building", "City", "ComicsCharacter",
    "Food", "Monument", "SportsTeam", "University", "WrittenWork",
))


def format_e2e(path):
    records = []
    for number, line in enumerate(_read_lines(path), 1):
        parts = line.strip().split("||")
        if len(parts) != 2 or not parts[0]:
            raise NLGError(f"{path}: line {number}: expected 'meaning representation||reference text'")
        records.append({"context": parts[0], "completion": parts[1]})
    return records, _reference_notes(records, path)


def format_webnlg(path):
    entries = _load_json(path, dict).get("entries")
    if not isinstance(entries, list):
        raise NLGError(f"{path}: expected {{\"entries\": [...]}}")
    records, skipped, without_reference = [], 0, 0
    for number, wrapped in enumerate(entries, 1):
        if not (isinstance(wrapped, dict) and len(wrapped) == 1):
            raise NLGError(f"{path}: entry {number}: expected an object with one key")
        entry = next(iter(wrapped.values()))
        where = f"{path}: entry {number}"
        triples = [_fields(t, ("subject", "property", "object"), where)
                   for t in _field(entry, "modifiedtripleset", where, list)]
        context = _join_triples(triples, where)
        (category,) = _fields(entry, ("category",), where)
        good = 0
        for lex in _field(entry, "lexicalisations", where, list):
            comment, text = _fields(lex, ("comment", "lex"), where)
            if comment != "good":
                skipped += 1
                continue
            good += 1
            records.append({"context": context, "completion": text, "category": category,
                            "seen": category in WEBNLG_SEEN_CATEGORIES})
        without_reference += good == 0
    notes = _reference_notes(records, path)
    if skipped:
        notes.append(f"{skipped} lexicalisations not marked 'good' skipped, as microsoft/LoRA's converter does; "
                     f"entries left without any reference: {without_reference}")
    return records, notes


def format_dart(path):
    entries = _load_json(path, list)
    records = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: entry {number}"
        triples = []
        for triple in _field(entry, "tripleset", where, list):
            if not (isinstance(triple, list) and len(triple) == 3 and all(isinstance(t, str) for t in triple)):
                raise NLGError(f"{where}: a triple is not [subject, predicate, object] strings")
            triples.append((triple[0], triple[1].lower(), triple[2]))
        context = _join_triples(triples, where)
        for annotation in _field(entry, "annotations", where, list):
            (text,) = _fields(annotation, ("text",), where)
            records.append({"context": context, "completion": text})
    return records, _reference_notes(records, path)


def squad_prompt(paragraph, question):
    """The SQuAD prompt, the same for training and generation: `Context: ... Question: ... Answer:`."""
    return f"Context: {paragraph.strip()} Question: {question.strip()} Answer:"


def squad_paragraph(record):
    """The (stripped, possibly truncated) paragraph inside a SQuAD record's prompt."""
    prefix, suffix = "Context: ", f" Question: {record['question'].strip()} Answer:"
    return record["context"][len(prefix):len(record["context"]) - len(suffix)]


def answer_span(paragraph, answer):
    """(start, end, exact) of a gold answer in `paragraph`: at its answer_start where that points at its
    text, else at the first occurrence of the text (exact False; start -1: the text is not there).
    Offsets count from the source paragraph, so a stripped one with leading whitespace needs the fallback."""
    text, start = answer["text"], answer["answer_start"]
    if paragraph.startswith(text, start):
        return start, start + len(text), True
    found = paragraph.find(text.strip())
    return found, found + len(text.strip()), False


def format_squad(path):
    """A SQuAD v1.1 file (train or dev) -> one record per question, in file order. Every question
    needs at least one answer whose text is in its paragraph; ids must be unique (predictions are
    keyed by them)."""
    articles = _field(_load_json(path, dict), "data", path, list)
    records, ids, shifted = [], set(), 0
    for article_number, article in enumerate(articles, 1):
        where = f"{path}: article {article_number}"
        (title,) = _fields(article, ("title",), where)
        for paragraph_number, paragraph in enumerate(_field(article, "paragraphs", where, list), 1):
            where_paragraph = f"{where} paragraph {paragraph_number}"
            (text,) = _fields(paragraph, ("context",), where_paragraph)
            if not text.strip():
                raise NLGError(f"{where_paragraph}: empty context")
            for qa in _field(paragraph, "qas", where_paragraph, list):
                (qid,) = _fields(qa, ("id",), f"{where_paragraph} question")
                where_question = f"{where_paragraph} question {qid}"
                if qid in ids:
                    raise NLGError(f"{where_question}: duplicate question id")
                ids.add(qid)
                (question,) = _fields(qa, ("question",), where_question)
                if not question.strip():
                    raise NLGError(f"{where_question}: empty question")
                answers = [_squad_answer(answer, where_question)
                           for answer in _field(qa, "answers", where_question, list)]
                if not answers:
                    raise NLGError(f"{where_question}: no answers (every SQuAD v1.1 train / dev question has one)")
                for answer in answers:
                    start, _, exact = answer_span(text, answer)
                    if start < 0:
                        raise NLGError(f"{where_question}: answer {answer['text']!r} is not in the paragraph")
                    shifted += not exact
                records.append({"context": squad_prompt(text, question), "completion": answers[0]["text"].strip(),
                                "id": qid, "question": question, "title": title, "answers": answers})
    notes = [f"{shifted} gold answer(s) whose answer_start does not point at their text; "
             "located by the first occurrence of the text where truncation needs them"] if shifted else []
    return records, notes


def _squad_answer(answer, where):
    """{"text", "answer_start"} of one gold answer, checked."""
    (text,) = _fields(answer, ("text",), where)
    start = _field(answer, "answer_start", where)
    if not (type(start) is int and start >= 0 and text.strip()):
        raise NLGError(f"{where}: an answer needs a non-empty text and an answer_start >= 0")
    return {"text": text, "answer_start": start}


def read_formatted(path):
    """Records of an already formatted jsonl file (e.g. the offline DART training pool)."""
    records = []
    for number, item in read_jsonl(path, required=("context", "completion")):
        if not (isinstance(item["context"], str) and isinstance(item["completion"], str) and item["context"]):
            raise NLGError(f"{path}: line {number}: 'context' and 'completion' must be strings, context non-empty")
        records.append(item)
    return records, _reference_notes(records, path)


def check_triple_contexts(records, path):
    """Every context must be `subject : predicate : object` triples joined by ' | ' (DART strata read
    the first predicate from it)."""
    for number, record in enumerate(records, 1):
        if any(len(triple.split(" : ")) < 3 for triple in record["context"].split(" | ")):
            raise NLGError(f"{path}: line {number}: context is not 'subject : predicate : object' triples")


def _join_triples(triples, where):
    if not triples:
        raise NLGError(f"{where}: empty triple set")
    return " | ".join("{} : {} : {}".format(*triple) for triple in triples)


def _reference_notes(records, path):
    """Empty reference texts are kept (as the reference converters do) and reported; an input
    with no non-empty reference at all is an error."""
    has_text = {}
    for record in records:
        has_text[record["context"]] = has_text.get(record["context"], False) or bool(record["completion"].strip())
    for context, ok in has_text.items():
        if not ok:
            raise NLGError(f"{path}: input {context[:60]!r} has only empty references")
    empty = sum(not record["completion"].strip() for record in records)
    return [f"{empty} empty reference text(s) kept, as microsoft/LoRA's converter does"] if empty else []


def _read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except OSError as err:
        raise NLGError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise NLGError(f"{path}: not UTF-8 text") from None


def _load_json(path, kind):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise NLGError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise NLGError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise NLGError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(data, kind):
        raise NLGError(f"{path}: expected a JSON {kind.__name__} at the top level")
    return data


def _field(item, key, where, kind=object):
    if not isinstance(item, dict) or key not in item:
        raise NLGError(f"{where}: missing key {key!r}")
    if not isinstance(item[key], kind):
        raise NLGError(f"{where}: {key!r} must be a {kind.__name__}")
    return item[key]


def _fields(item, keys, where):
    values = tuple(_field(item, key, where) for key in keys)
    if not all(isinstance(value, str) for value in values):
        raise NLGError(f"{where}: {', '.join(keys)} must be strings")
    return values
