"""The CPU demo's pretraining text: WebNLG and DART records without any E2E, plus SQuAD paragraphs.

No pretrained GPT-2 can be downloaded on an offline CPU machine, and LoRA on a random frozen model
learns almost nothing, so the cpu preset first trains gpt2.tiny as a language model itself
(data/prepare_corpus.py builds the files, scripts/pipeline.py trains on them). The text:
- WebNLG and DART training records, each as the sequence fine-tuning sees (triples, <|endoftext|>,
  sentence, <|endoftext|>), so the base knows "structured input, then a sentence";
- minus every record with an E2E field among its predicates: DART contains the E2E training set
  turned into triples (about half of the offline DART sample), and pretraining on it would make
  the "base" good at E2E before any LoRA (zero-shot BLEU ~40 in a prototype);
- optionally general English (SQuAD v1.1 paragraphs from Wikipedia, cut into chunks): ~7% of the
  E2E test references' tokens never occur in WebNLG + E2E-free DART, so their tied embeddings would
  stay at their random init (LoRA on q and v cannot fix that).
Plain text is encoded as context = [<|endoftext|>] and completion = the ids, so the completion mask
of lora_nlg.data.batching puts the loss on every token: language modelling with the unchanged trainer.
Records keep their context / completion split (loss on the sentence) unless loss_on="all".
"""
import json

from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.util.errors import NLGError

# E2E's meaning-representation fields, as DART spells them (eatType, priceRange, customer rating,
# familyFriendly, ...), compared lower-cased without spaces and underscores. `name` is left out:
# non-E2E DART tables use it too. food / area / near matter: 139 E2E records of the DART sample
# carry only those (a rule on the first four alone misses them).
E2E_FIELDS = frozenset({"eattype", "pricerange", "customerrating", "familyfriendly", "food", "area", "near"})


def field_key(name):
    return name.lower().replace(" ", "").replace("_", "")


def predicates(context):
    """The predicates of a `subject : predicate : object | ...` context (parts without two ' : ' are skipped)."""
    found = []
    for triple in context.split(" | "):
        parts = triple.split(" : ")
        if len(parts) >= 3:
            found.append(parts[1])
    return found


def carries_e2e_field(context):
    return any(field_key(p) in E2E_FIELDS for p in predicates(context))


def without_e2e(records):
    """(records whose context has no E2E field, number removed)."""
    kept = [record for record in records if not carries_e2e_field(record["context"])]
    return kept, len(records) - len(kept)


def lm_example(ids):
    """An example whose completion mask covers every token of `ids`."""
    return {"context": [EOS_ID], "completion": list(ids)}


LOSS_ON = ("text", "all")


def record_examples(encoded, loss_on="text"):
    """Encoded records (lora_nlg.data.tokenizer: context and completion each end in <|endoftext|>) -> examples.

    "text": as fine-tuning sees them, the loss on the sentence only (the triples still pass through the
    model, so their tied embeddings train on the input side); "all": the whole sequence is predicted.
    "text" needs about half the logits: with a 50,257-word head on a 128-wide model that is about half
    the cost of a pretraining step."""
    if loss_on not in LOSS_ON:
        raise NLGError(f"loss_on {loss_on!r}: choose from {', '.join(LOSS_ON)}")
    if loss_on == "text":
        return [{"context": item["context"], "completion": item["completion"]} for item in encoded]
    return [lm_example(item["context"] + item["completion"]) for item in encoded]


def chunk_examples(ids_per_text, chunk_tokens):
    """Each text's ids + <|endoftext|>, cut into chunks of at most chunk_tokens: rows about as long as the
    records, so dynamic padding wastes little when both are batched together."""
    if chunk_tokens < 2:
        raise NLGError(f"chunk length {chunk_tokens}: must be at least 2 tokens")
    examples = []
    for ids in ids_per_text:
        ids = list(ids) + [EOS_ID]
        examples += [lm_example(ids[start:start + chunk_tokens]) for start in range(0, len(ids), chunk_tokens)]
    return examples


def squad_paragraphs(path):
    """The distinct paragraph texts of a SQuAD v1.1 json file, in file order."""
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
