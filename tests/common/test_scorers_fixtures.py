"""The scorer CLIs print exactly what the official scorers printed on the committed fixtures.

Expected values: tests/fixtures/scorers/README.md (official e2e-metrics `measure_scores.py -p` and
GenerationEval `eval.py` runs on these files). Needs Java, as the official scorers do.
"""
import json

import pytest

from testpaths import SCORER_FIXTURES as FIXTURES
from testpaths import run_script, sha256s


def test_measure_scores_prints_the_official_e2e_block(tmp_path):
    result = run_script("eval/measure_scores.py", FIXTURES / "e2e" / "refs.txt", FIXTURES / "e2e" / "preds.txt",
                        "--json", tmp_path / "scores.json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("SCORES:\n==============\nBLEU: 0.7203\nNIST: 7.7889\nMETEOR: 0.4801\n"
                             "ROUGE_L: 0.7910\nCIDEr: 2.3039\n\n")
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert list(scores) == ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"]
    assert scores["NIST"] == pytest.approx(7.7889, abs=5e-5)


def test_generation_eval_matches_official_dart_values(tmp_path):
    dart = FIXTURES / "dart"
    result = run_script("eval/generation_eval.py", "-R", dart / "reference", "-H", dart / "hypothesis", "-nr", 3,
                        "-m", "bleu,meteor,ter,chrf++", "--json", tmp_path / "scores.json")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["bleu"] == 46.64
    assert round(scores["bleu_nltk"], 6) == 0.464061
    assert round(scores["meteor"], 6) == 0.376829
    assert round(scores["ter"], 6) == 0.511369
    assert round(scores["chrf++"], 6) == 0.628864
    assert "BLEU       46.64" in result.stdout.splitlines()


def test_the_committed_fixtures_are_the_files_their_readme_describes():
    block = (FIXTURES / "README.md").read_text(encoding="utf-8").split("## sha256\n```\n")[1].split("```")[0]
    listed = {name: digest for digest, name in (line.split("  ") for line in block.splitlines())}
    assert listed == {f"{folder}/{name}": digest for folder in ("e2e", "dart")
                      for name, digest in sha256s(FIXTURES / folder).items()}
