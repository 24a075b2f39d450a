"""The cpu demo's base: its pretraining corpus (keywords -> sentence records of SQuAD-train paragraphs only) and its HF
export."""
import json
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest

from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights
from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.checkpoints.tensor_files import read_tensors
from lora_nlg.data import pretrain_corpus as corpus
from lora_nlg.data import sampling
from lora_nlg.data.tokenizer import EOS_ID, GPT2Tokenizer
from lora_nlg.model.config import GPT2Config
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.util.errors import NLGError
from testpaths import MIRROR, squad_train_file

ROOT = pathlib.Path(__file__).resolve().parents[2]

def test_sentences_become_shuffled_keywords_then_the_sentence():
    paragraph = ("The Eiffel Tower was built in 1889 for the fair. Short one. It is 330 metres tall, and it "
                 "was the tallest structure in the world until 1930!  Was it? Yes.")
    assert corpus.sentences(paragraph) == ["The Eiffel Tower was built in 1889 for the fair.",
                                           "It is 330 metres tall, and it was the tallest structure in the world "
                                           "until 1930!"]
    record = corpus.keyword_record("The tower, the tower of Paris, was built in 1889.", random.Random(0))
    assert record["completion"] == "The tower, the tower of Paris, was built in 1889."
    assert sorted(record["context"].split(" | ")) == ["1889", "Paris", "built", "tower"]  # once each, no stopword
    records = corpus.keyword_records([paragraph, paragraph], seed=3)
    assert records == corpus.keyword_records([paragraph, paragraph], seed=3) and len(records) == 4
    assert all(set(r["context"].split(" | ")) <= set(corpus.WORD.findall(r["completion"])) for r in records)


def test_validation_paragraphs_are_spread_and_never_train():
    paragraphs = [f"p{i}" for i in range(10)]
    train, valid = corpus.split_paragraphs(paragraphs, 3)
    assert valid == ["p2", "p5", "p8"] and train == [p for p in paragraphs if p not in valid]
    for count in (0, 10):
        with pytest.raises(NLGError, match=f"{count} validation paragraphs of 10"):
            corpus.split_paragraphs(paragraphs, count)


def test_squad_paragraphs_are_read_once_each_and_bad_files_named(tmp_path):
    good = {"data": [{"paragraphs": [{"context": "A b."}, {"context": "C d."}]},
                     {"paragraphs": [{"context": "A b."}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(good))
    assert corpus.squad_paragraphs(tmp_path / "squad.json") == ["A b.", "C d."]
    (tmp_path / "bad.json").write_text(json.dumps({"data": [{"title": "x"}]}))
    with pytest.raises(NLGError, match="bad.json: not a SQuAD v1.1 file"):
        corpus.squad_paragraphs(tmp_path / "bad.json")


def test_evenly_spaced_is_stable_and_spread():
    assert sampling.evenly_spaced(list(range(10)), 3) == [0, 3, 6]
    assert sampling.evenly_spaced([1, 2], 5) == [1, 2]


def test_corpus_cli_writes_squad_train_paragraphs_only(tmp_path):
    """The real source, 300 paragraphs: keyword records only (loss on the sentence, as fine-tuning); no E2E / WebNLG
    / DART record, no question, nothing of SQuAD dev (the SQuAD demo's test set)."""
    out = tmp_path / "corpus"
    result = subprocess.run([sys.executable, str(ROOT / "data" / "prepare_corpus.py"), "--source", str(MIRROR),
                             "--out", str(out), "--vocab-dir", str(tmp_path / "vocab"), "--paragraphs", "300",
                             "--valid_paragraphs", "20"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["file"].endswith(squad_train_file()) and manifest["source"]["paragraphs"] == 300
    files = manifest["files"]
    assert files["train.jsonl"]["paragraphs"] == 280 and files["valid.jsonl"]["paragraphs"] == 20
    tokenizer = GPT2Tokenizer(tmp_path / "vocab")
    rows = {name: [json.loads(line) for line in (out / name).read_text().splitlines()]
            for name in ("train.jsonl", "valid.jsonl")}
    for name, examples in rows.items():
        counts = files[name]
        assert len(examples) == counts["examples"] > counts["paragraphs"]  # a record per sentence
        assert sum(len(row["completion"]) for row in examples) == counts["loss_tokens"]
        assert sum(len(row["context"]) + len(row["completion"]) for row in examples) == counts["tokens"]
        for row in examples[:50]:  # keywords, <|endoftext|>, the sentence, <|endoftext|>
            keywords, sentence = tokenizer.decode(row["context"][:-1]), tokenizer.decode(row["completion"][:-1])
            assert row["context"][-1] == row["completion"][-1] == EOS_ID
            assert set(keywords.split(" | ")) <= set(corpus.WORD.findall(sentence))
    text = {name: tokenizer.decode([i for row in examples for i in row["context"] + row["completion"]])
            for name, examples in rows.items()}
    assert " : " not in text["train.jsonl"] and "?<|endoftext|>" not in text["train.jsonl"]
    dev = json.loads(pathlib.Path(MIRROR, "data", "squad", "dev-v1.1.json").read_text())["data"]
    dev_sentence = dev[0]["paragraphs"][0]["context"][:80]
    assert dev_sentence not in text["train.jsonl"] and dev_sentence not in text["valid.jsonl"]
    first_valid = text["valid.jsonl"][:60]
    assert first_valid not in text["train.jsonl"]  # held-out paragraphs do not train


def test_hf_export_reads_back_equal_with_transformer_prefixed_keys(tmp_path):
    config = GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=300, n_positions=32)
    weights = init_gpt2_weights(config, seed=3)
    write_hf_gpt2(tmp_path / "base", weights, config)
    raw = read_tensors(tmp_path / "base")
    assert all(name.startswith("transformer.") for name in raw) and "lm_head.weight" not in raw
    back = load_gpt2_weights(tmp_path / "base", config)
    assert all(np.array_equal(back[name], weights[name]) for name in weights)
    hf = json.loads((tmp_path / "base" / "config.json").read_text())
    assert (hf["model_type"], hf["n_embd"], hf["n_layer"], hf["n_head"], hf["vocab_size"]) == ("gpt2", 16, 2, 2, 300)
    assert hf["activation_function"] == "gelu_new" and hf["tie_word_embeddings"] is True


def test_hf_export_refuses_incomplete_weights(tmp_path):
    config = GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=300, n_positions=32)
    weights = init_gpt2_weights(config, seed=3)
    del weights["wpe.weight"]
    with pytest.raises(NLGError, match="missing keys: wpe.weight"):
        write_hf_gpt2(tmp_path / "base", weights, config)
