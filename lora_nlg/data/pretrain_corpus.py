"""The CPU demo's pretraining text: SQuAD v1.1 TRAIN paragraphs (Wikipedia prose), nothing of the test tasks.

No pretrained GPT-2 can be downloaded on an offline CPU machine, and LoRA on a random frozen model
learns almost nothing, so the cpu preset first trains a small GPT-2 on general English, the way GPT-2
read web text before it was adapted (data/prepare_corpus.py builds the files, scripts/pipeline.py
trains on them). The text holds no E2E, WebNLG or DART record and no SQuAD question or answer; SQuAD
dev (the SQuAD demo's test set) is never read.
The objective is keywords -> sentence (a denoising objective, like BART's sentence shuffling): the
content words of a sentence, deduplicated, shuffled and joined by " | ", as the context, the sentence as
the completion, encoded as fine-tuning data (the loss on the sentence). It teaches what a 7M-parameter
model does not pick up from LoRA's few hundred steps: to write a fluent sentence that uses the words of
its input. Measured (docs/results.md, "The cpu base"): language modelling on the same paragraphs left
LoRA on E2E writing empty lines (BLEU 1.0); half language modelling, half keywords BLEU 11.8; keywords
only 22.9, at the same pretraining time.
"""
import json
import random
import re

from lora_nlg.util.errors import NLGError


def squad_paragraphs(path):
    """The distinct paragraph texts of a SQuAD v1.1 json file, in file order (questions and answers unread)."""
    try:
        with open(path, encoding="utf-8") as f:
            articles = json.load(f)["data"]
        texts = [paragraph["context"] for article in articles for paragraph in article["paragraphs"]]
    except OSError as err:
        raise NLGError(f"{path}: cannot read ({err.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise NLGError(f"{path}: not a SQuAD v1.1 file (expected data[].paragraphs[].context)") from None
    if not all(isinstance(text, str) and text.strip() for text in texts):
        raise NLGError(f"{path}: a paragraph context is empty or not a string")
    return list(dict.fromkeys(texts))


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
WORD = re.compile(r"[^\W_][\w'.-]*[^\W_]|[^\W_]")
SENTENCE_WORDS = (5, 40)  # sentences shorter or longer (in words) make no keyword example
STOPWORDS = frozenset("""a an the of in on at to for from by with and or but nor so is are was were be been being am
as that this these those it its it's he she they we you i his her their our your my him them us which who whom
whose what when where why how while than then there here into onto over under about after before during between
through also not no yes if do does did has have had having will would can could may might must shall should
""".split())


def sentences(paragraph):
    """The sentences of a paragraph with 5 to 40 words (split after . ! ? before a capital, digit or quote)."""
    found = []
    for sentence in SENTENCE_END.split(paragraph.strip()):
        sentence = " ".join(sentence.split())
        if SENTENCE_WORDS[0] <= len(sentence.split()) <= SENTENCE_WORDS[1]:
            found.append(sentence)
    return found


def keyword_record(sentence, rng):
    """{"context": its content words shuffled, joined by " | ", "completion": the sentence}."""
    words = list(dict.fromkeys(word for word in WORD.findall(sentence) if word.lower() not in STOPWORDS))
    rng.shuffle(words)
    return {"context": " | ".join(words), "completion": sentence}


def keyword_records(paragraphs, seed):
    """A keywords -> sentence record for every sentence of the paragraphs (shuffled by a seeded generator, so the
    same paragraphs give the same bytes)."""
    rng = random.Random(seed)
    return [keyword_record(sentence, rng) for paragraph in paragraphs for sentence in sentences(paragraph)]


def split_paragraphs(paragraphs, valid_count):
    """(train, valid): every k-th paragraph held out for validation, about `valid_count` of them, spread over
    the file; the rest trains."""
    if not 0 < valid_count < len(paragraphs):
        raise NLGError(f"{valid_count} validation paragraphs of {len(paragraphs)}: need at least one of each")
    step = len(paragraphs) // valid_count
    held = set(range(step - 1, len(paragraphs), step)[:valid_count])
    return ([p for i, p in enumerate(paragraphs) if i not in held], [p for i, p in enumerate(paragraphs) if i in held])
