"""data/prepare.py end to end on the reference mirror: reproducible bytes, whole inputs, stratum quotas,
ids as gpt2_encode.py writes them, and one-line errors for bad sources."""
import pathlib
import re
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from lora_nlg.data import fetch, sampling
from lora_nlg.data.format_converting import format_dart, format_e2e, format_webnlg
from lora_nlg.data.tokenizer import EOS_ID, GPT2Tokenizer
from lora_nlg.util.errors import NLGError
from testpaths import MIRROR, ROOT, load_script, read_records, sha256s

prepare = load_script("data/prepare.py")  # a script, not a package module
SPLITS = ("train", "valid", "test")
STRATUM = {"e2e": sampling.e2e_stratum, "webnlg": sampling.webnlg_stratum}


def run_prepare(out, *extra, dataset="e2e", fraction="0.18"):
    args = prepare.parse_args(["--dataset", dataset, "--source", str(MIRROR), "--fraction", fraction, "--seed", "110",
                               "--out", str(out), "--vocab-dir", str(out / "vocab"), *extra])
    return prepare.prepare(args)


def grouped(records):
    refs = defaultdict(list)
    for record in records:
        refs[record["context"]].append(record["completion"])
    return refs


def full_records(dataset):
    """The unsampled splits, formatted directly from the raw files (DART train: the offline pool)."""
    data = MIRROR / "data"
    if dataset == "e2e":
        paths = {s: data / f"e2e/{s}.txt" for s in SPLITS}
        return {s: format_e2e(str(p))[0] for s, p in paths.items()}
    if dataset == "webnlg":
        names = {"train": "train", "valid": "dev", "test": "test"}
        return {s: format_webnlg(str(data / f"webnlg_challenge_2017/{n}.json"))[0] for s, n in names.items()}
    return {"train": read_records(data / "dart/sampled_18pct/train_formatted.jsonl"),
            "valid": format_dart(str(data / "dart/dart-v1.1.1-full-dev.json"))[0],
            "test": format_dart(str(data / "dart/dart-v1.1.1-full-test.json"))[0]}


@pytest.fixture(scope="module", params=["e2e", "webnlg", "dart"])
def prepared(request, tmp_path_factory):
    """(dataset, out folder of run 1, out folder of run 2, manifest of run 1, full records)."""
    dataset = request.param
    first, second = tmp_path_factory.mktemp(f"{dataset}_1"), tmp_path_factory.mktemp(f"{dataset}_2")
    manifest = run_prepare(first, dataset=dataset)
    run_prepare(second, dataset=dataset)
    return dataset, first, second, manifest, full_records(dataset)


def test_two_runs_give_byte_identical_outputs(prepared):
    dataset, first, second, manifest, _ = prepared
    assert set(sha256s(first)) == {*(f"{s}{x}.jsonl" for s in SPLITS for x in ("", "_formatted")), "manifest.json"}
    assert sha256s(first) == sha256s(second)
    assert {name: digest for name, digest in sha256s(first).items() if name != "manifest.json"} == manifest["files"]


def test_sampled_inputs_carry_all_their_references_in_source_order(prepared):
    dataset, out, _, _, full = prepared
    for split in SPLITS:
        sampled = read_records(out / f"{split}_formatted.jsonl")
        full_refs = grouped(full[split])
        assert grouped(sampled) == {context: full_refs[context] for context in grouped(sampled)}
        source_lines = iter(full[split])
        # the sampled lines are a subsequence of the source lines: same order
        assert all(any(line == record for line in source_lines) for record in sampled), split


def test_every_stratum_keeps_18_percent_of_its_inputs(prepared):
    dataset, out, _, manifest, full = prepared
    stratum_of = STRATUM.get(dataset) or sampling.dart_stratum_function(full)
    for split in SPLITS:
        fraction = 1.0 if (dataset, split) == ("dart", "train") else 0.18  # the DART pool is already 18%
        sampled = read_records(out / f"{split}_formatted.jsonl")
        kept = Counter(i.stratum for i in sampling.group_inputs(sampled, stratum_of))
        total = Counter(i.stratum for i in sampling.group_inputs(full[split], stratum_of))
        assert set(kept) == set(total)
        for stratum, n in total.items():
            assert abs(kept[stratum] - fraction * n) <= 1 and kept[stratum] >= 1, (split, stratum)
            assert manifest["splits"][split]["strata"][stratum]["inputs"] == kept[stratum]
        assert manifest["splits"][split]["references"] == len(sampled)


def test_ids_are_gpt2_encode_add_bos_add_eos_of_the_formatted_lines(prepared):
    dataset, out, _, _, _ = prepared
    tokenizer = GPT2Tokenizer(str(out / "vocab"))
    for split in ("valid", "test"):
        records = read_records(out / f"{split}_formatted.jsonl")
        encoded = read_records(out / f"{split}.jsonl")
        assert len(encoded) == len(records)
        for record, ids in list(zip(records, encoded))[::7]:
            assert ids == {"context": tokenizer.encode(record["context"]) + [EOS_ID],
                           "completion": tokenizer.encode(" " + record["completion"]) + [EOS_ID]}


def test_manifest_says_where_the_dart_training_pool_comes_from(prepared):
    dataset, _, _, manifest, _ = prepared
    pool = manifest["dart_train_pool"]
    if dataset != "dart":
        assert pool is None
        return
    assert pool["file"] == "data/dart/sampled_18pct/train_formatted.jsonl" and pool["fraction_of_pool"] == 1.0
    assert "full train split is not in the source" in pool["note"]
    assert {f["file"]: f["sha256_recorded"] for f in manifest["raw_files"]}[pool["file"]] is True


def test_dart_pool_is_subsampled_below_18_percent(tmp_path):
    manifest = run_prepare(tmp_path, dataset="dart", fraction="0.09")
    train = manifest["splits"]["train"]
    assert train["fraction"] == 0.5 and manifest["dart_train_pool"]["fraction_of_pool"] == 0.5
    for counts in train["strata"].values():
        assert abs(counts["inputs"] - 0.5 * counts["inputs_full"]) <= 1


def test_full_e2e_is_byte_identical_to_the_reference_converter_output(tmp_path):
    manifest = run_prepare(tmp_path, fraction="1.0")
    assert manifest["splits"]["train"]["references"] == 42061 and manifest["splits"]["test"]["inputs"] == 630
    with open(tmp_path / "train_formatted.jsonl", "rb") as f:
        first_line = f.readline()
    # hand-written from train.txt line 1 the way json.dumps writes format_converting_e2e.py's record
    assert first_line == (b'{"context": "name : The Vaults | Type : pub | price : more than \\u00a3 30 | '
                          b'customer rating : 5 out of 5 | near : Caf\\u00e9 Adriatic", '
                          b'"completion": "The Vaults pub near Caf\\u00e9 Adriatic has a 5 star rating . '
                          b'Prices start at \\u00a3 30 ."}\n')


@pytest.mark.parametrize("fraction, name", [("0.18", "sampled_18pct"), ("1", "full"), ("0.05", "sampled_5pct"),
                                            ("0.125", "sampled_12.5pct"), ("0.07", "sampled_7pct")])
def test_default_output_folder(fraction, name):
    args = prepare.parse_args(["--dataset", "webnlg", "--fraction", fraction])
    assert pathlib.Path(args.out) == ROOT / "data" / "webnlg" / name


def fake_mirror(tmp_path, change):
    """A mirror of the vocabulary and E2E files (symlinks); `change(root)` breaks it."""
    root = tmp_path / "mirror"
    for relative in ["vocab/encoder.json", "vocab/vocab.bpe", *(f"data/e2e/{s}.txt" for s in SPLITS)]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(MIRROR / relative)
    change(root)
    return root


def corrupt_test_split(root):
    target = root / "data/e2e/test.txt"
    text = target.read_text(encoding="utf-8")
    target.unlink()
    target.write_text(text.replace("Blue Spice", "Blue Spicy", 1), encoding="utf-8")


@pytest.mark.parametrize("change, problem", [
    (corrupt_test_split, "data/e2e/test.txt: sha256 [0-9a-f]{64} does not match the recorded 81b1bcd4"),
    (lambda root: (root / "data/e2e/valid.txt").unlink(), "data/e2e/valid.txt: missing"),
    (lambda root: (root / "vocab/vocab.bpe").unlink(), "vocab/vocab.bpe: missing"),
])
def test_bad_source_is_a_one_line_error_and_exit_2(tmp_path, change, problem):
    root = fake_mirror(tmp_path, change)
    result = subprocess.run([sys.executable, str(ROOT / "data/prepare.py"), "--dataset", "e2e", "--source", str(root),
                             "--out", str(tmp_path / "out"), "--vocab-dir", str(tmp_path / "vocab")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert re.match(f"error: {root}/{problem}", result.stderr), result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_dart_source_without_train_or_pool_is_an_error(tmp_path):
    with pytest.raises(NLGError, match="dart-v1.1.1-full-train.json: missing .and no DART training pool"):
        fetch.fetch_splits("dart", str(tmp_path), str(tmp_path / "cache"))


def test_download_is_cached_verified_and_fails_in_one_line_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(fetch.DOWNLOAD_URL_ENV, raising=False)  # each file's own url
    original = MIRROR / "data/e2e/valid.txt"
    good = fetch.RawFile("data/e2e/valid.txt", original.as_uri(), None, fetch.RAW_SPLITS["e2e"]["valid"].sha256)
    fetched = fetch.download(good, str(tmp_path))
    assert fetched.verified and pathlib.Path(fetched.local).read_bytes() == original.read_bytes()
    wrong = good._replace(path="data/e2e/other.txt", url_sha256="0" * 64)
    with pytest.raises(NLGError, match="valid.txt: downloaded sha256 .* does not match the recorded 0000.*not kept"):
        fetch.download(wrong, str(tmp_path))
    assert not (tmp_path / "data/e2e/other.txt").exists()
    offline = good._replace(path="data/e2e/gone.txt", url=(tmp_path / "nowhere.txt").as_uri())
    with pytest.raises(NLGError, match="nowhere.txt: download failed .*; offline\\? use --source DIR"):
        fetch.download(offline, str(tmp_path))
    assert not (tmp_path / "data/e2e/gone.txt").exists()
