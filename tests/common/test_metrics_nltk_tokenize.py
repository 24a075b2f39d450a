"""nltk 3.5 word_tokenize with the Punkt English model, as GenerationEval tokenises for METEOR and TER."""
import nltk
import pytest

from lora_nlg.metrics.nltk_tokenize import _tokenizers, tokenized_line, word_tokenize
from lora_nlg.util.errors import NLGError


def test_sentence_split_separates_periods_that_end_sentences():
    # without Punkt, '1950.' and 'D.C.' would stay one token: the sentence split decides it
    text = "Dr. Smith was born in 1950. He lived in the U.S. and Washington D.C. It's great."
    assert word_tokenize(text) == ["Dr.", "Smith", "was", "born", "in", "1950", ".", "He", "lived", "in", "the",
                                   "U.S.", "and", "Washington", "D.C", ".", "It", "'s", "great", "."]


def test_abbreviations_from_the_model_do_not_end_sentences():
    assert word_tokenize("It is in St. Louis. The runway is 2,195 m long.") == \
        ["It", "is", "in", "St.", "Louis", ".", "The", "runway", "is", "2,195", "m", "long", "."]


def test_treebank_quotes_and_contractions_of_nltk_3_5():
    assert word_tokenize('"Great", isn\'t it? Yes... no.') == \
        ["``", "Great", "''", ",", "is", "n't", "it", "?", "Yes", "...", "no", "."]


def test_already_tokenised_lowercase_text_is_unchanged():
    line = "abilene , texas is served by the abilene regional airport ."
    assert tokenized_line(line) == line
    assert tokenized_line("") == ""


def test_another_nltk_version_is_refused(monkeypatch):
    monkeypatch.setattr(nltk, "__version__", "3.9.1")
    _tokenizers.cache_clear()
    try:
        with pytest.raises(NLGError, match=r"nltk: version 3.9.1 tokenises differently"):
            word_tokenize("a")
    finally:
        _tokenizers.cache_clear()
