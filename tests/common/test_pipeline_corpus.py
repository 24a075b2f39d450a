"""The cpu demo's base: its pretraining corpus (no E2E records, every token a loss position) and its HF export."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lora_nlg.checkpoints.gpt2_weights import load_gpt2_weights
from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.checkpoints.tensor_files import read_tensors
from lora_nlg.data import pretrain_corpus as corpus
from lora_nlg.data import sampling
from lora_nlg.data.batching import make_example
from lora_nlg.data.tokenizer import EOS_ID, GPT2Tokenizer
from lora_nlg.model.config import GPT2Config
from lora_nlg.model.init_weights import init_gpt2_weights
from lora_nlg.util.errors import NLGError
from testpaths import MIRROR, squad_train_file

ROOT = pathlib.Path(__file__).resolve().parents[2]

E2E_LIKE = [  # E2E meaning representations as DART has them, and spelling variants of the same fields
    "The Eagle : eattype : coffee shop | The Eagle : pricerange : cheap",
    "Zizzi : customer rating : 5 out of 5",
    "Cotto : food : Chinese | Cotto : near : Café Rouge",  # no eatType / priceRange: still E2E
    "Aromi : familyFriendly : yes",
    "Aromi : family_friendly : no",
    "Blue Spice : priceRange : high | Blue Spice : area : riverside",
    "The Mill : Customer_Rating : low",
]
NOT_E2E = [
    "Aarhus Airport : cityServed : Aarhus, Denmark",  # WebNLG
    "Alan Bean : occupation : Test pilot | Alan Bean : birthPlace : Wheeler, Texas",
    "Tom Smith : name : Tom | Tom Smith : club : Arsenal",  # `name` alone is not E2E
    "[TABLECONTEXT] : [title] : Foods of Spain | Paella : region : Valencia",  # 'Foods' is not the field `food`
    "no triple here",
]


def test_records_carrying_any_e2e_field_are_removed_and_others_kept():
    records = [{"context": c, "completion": "text"} for c in E2E_LIKE + NOT_E2E]
    kept, removed = corpus.without_e2e(records)
    assert removed == len(E2E_LIKE)
    assert [r["context"] for r in kept] == NOT_E2E


def test_loss_positions_are_the_sentence_or_every_token():
    encoded = [{"context": [10, 11, EOS_ID], "completion": [20, 21, 22, EOS_ID], "extra": 1}]
    (text,) = corpus.record_examples(encoded, "text")
    assert text == {"context": [10, 11, EOS_ID], "completion": [20, 21, 22, EOS_ID]}
    (example,) = corpus.record_examples(encoded, "all")
    assert example == {"context": [EOS_ID], "completion": [10, 11, EOS_ID, 20, 21, 22, EOS_ID]}
    inputs, target, mask = make_example(example["context"], example["completion"], seq_len=64)
    assert mask.sum() == len(example["completion"])  # every id is predicted, the first one from <|endoftext|>
    assert target[mask[:len(target)] > 0].tolist() == example["completion"]
    with pytest.raises(NLGError, match="loss_on 'some'"):
        corpus.record_examples(encoded, "some")


def test_paragraphs_are_cut_into_chunks_ending_in_eos():
    chunks = corpus.chunk_examples([list(range(1, 8)), [9]], chunk_tokens=3)
    assert [c["completion"] for c in chunks] == [[1, 2, 3], [4, 5, 6], [7, EOS_ID], [9, EOS_ID]]
    assert all(c["context"] == [EOS_ID] for c in chunks)
    with pytest.raises(NLGError, match="at least 2"):
        corpus.chunk_examples([[1]], chunk_tokens=1)


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


def test_corpus_cli_writes_e2e_free_lm_examples_from_the_mirror(tmp_path):
    """The real sources, 400 records of each: the DART part loses its E2E records (about half of it)."""
    out = tmp_path / "corpus"
    result = subprocess.run([sys.executable, str(ROOT / "data" / "prepare_corpus.py"), "--source", str(MIRROR),
                             "--out", str(out), "--vocab-dir", str(tmp_path / "vocab"), "--limit", "400",
                             "--valid_examples", "16"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    dart = manifest["sources"]["dart/train"]
    assert dart["records"] == 400 and dart["e2e_records_removed"] > 0
    assert dart["kept"] + dart["e2e_records_removed"] == 400
    squad_train = manifest["sources"]["squad/train"]
    assert squad_train["paragraphs"] == 400 and squad_train["file"].endswith(squad_train_file())
    tokenizer = GPT2Tokenizer(tmp_path / "vocab")
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == manifest["files"]["train.jsonl"]["examples"]
    squad = squad_train["chunks"]
    assert all(row["context"] == [EOS_ID] for row in rows[-squad:])  # plain text: every token has a loss
    assert all(row["context"][-1] == EOS_ID and len(row["context"]) > 1 for row in rows[:-squad])  # records
    text = tokenizer.decode([i for row in rows for i in row["context"] + row["completion"]])
    assert " : eattype : " not in text and " : pricerange : " not in text and "Alimentum" not in text
    assert len((out / "valid.jsonl").read_text().splitlines()) == 16


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
