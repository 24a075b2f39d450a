"""data/prepare.py under bad input and faults: an empty split is a one-line error, and a failed or killed
run never leaves half-written output (files are staged beside the output folder and moved in at the end)."""
import json
import re
import subprocess
import sys

import pytest

from testpaths import MIRROR, ROOT, load_script

prepare = load_script("data/prepare.py")

VOCAB = ("vocab/encoder.json", "vocab/vocab.bpe")


def mirror_with(tmp_path, links, files):
    """A source folder whose `links` point into the reference mirror and whose `files` hold the given text."""
    root = tmp_path / "mirror"
    for relative in (*VOCAB, *links):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(MIRROR / relative)
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return root


def run_cli(root, out, dataset):
    return subprocess.run([sys.executable, str(ROOT / "data/prepare.py"), "--dataset", dataset, "--source", str(root),
                           "--out", str(out), "--vocab-dir", str(out.parent / "vocab")],
                          capture_output=True, text=True, timeout=300)


def one_article_squad():
    dev = json.loads((MIRROR / "data/squad/dev-v1.1.json").read_text(encoding="utf-8"))
    return json.dumps({"version": "1.1", "data": dev["data"][:1]})


@pytest.mark.parametrize("dataset, links, files, problem", [
    ("dart", ("data/dart/dart-v1.1.1-full-dev.json", "data/dart/dart-v1.1.1-full-test.json"),
     {"data/dart/dart-v1.1.1-full-train.json": "[]"},
     "data/dart/dart-v1.1.1-full-train.json: no dart records for the train split"),
    ("squad", ("data/squad/dev-v1.1.json",), {"data/squad/train-v1.1.json": one_article_squad()},
     "data/squad/train-v1.1.json: no squad records for the (train|valid) split .SQuAD's valid split is held out"),
])
def test_an_empty_split_is_a_one_line_error_and_writes_nothing(tmp_path, dataset, links, files, problem):
    root = mirror_with(tmp_path, links, files)
    out = tmp_path / "out"
    result = run_cli(root, out, dataset)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert re.match(f"error: {root}/{problem}", result.stderr), result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def e2e_args(out):
    return prepare.parse_args(["--dataset", "e2e", "--source", str(MIRROR), "--fraction", "0.05", "--seed", "110",
                               "--out", str(out), "--vocab-dir", str(out.parent / "vocab")])


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_run_that_fails_midway_keeps_the_previous_output_and_leaves_no_partial_files(tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare.prepare(e2e_args(out))
    before = contents(out)
    calls = []

    def failing_write(staging, split, *rest):
        calls.append(split)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real_write(staging, split, *rest)

    real_write = prepare.write_split
    monkeypatch.setattr(prepare, "write_split", failing_write)
    with pytest.raises(OSError, match="injected"):
        prepare.prepare(e2e_args(out))
    assert contents(out) == before
    assert not list(tmp_path.glob(".out.partial-*"))


def test_leftovers_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "out"
    leftover = tmp_path / ".out.partial-killed"
    leftover.mkdir()
    (leftover / "train.jsonl").write_text("half a line", encoding="utf-8")
    manifest = prepare.prepare(e2e_args(out))
    assert not leftover.exists() and not list(tmp_path.glob(".out.partial-*"))
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], "manifest.json"])
