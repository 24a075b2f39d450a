"""METEOR 1.5 through the jar, and the errors when Java or a jar is missing."""
import pathlib
import subprocess
import sys

import pytest

from lora_nlg.metrics import java
from lora_nlg.metrics.meteor import meteor_score
from lora_nlg.util.errors import NLGError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_meteor_fragmentation_penalty_by_hand():
    # all 6 words match in 2 chunks: fMean 1, penalty gamma * (chunks / matches) ** beta = 0.6 * (2/6) ** 0.2
    score = meteor_score([["the cat sat on the mat"]], ["on the mat the cat sat"], num_refs=1)
    assert score == pytest.approx(1 - 0.6 * (2 / 6) ** 0.2, abs=1e-12)


def test_an_empty_last_hypothesis_is_scored_like_any_other():
    # GenerationEval's files lose an empty last line (METEOR -1). Scored: 2 of 4 content words recalled,
    # precision 1, no fragmentation (an exact match has none): fMean = P R / (0.85 P + 0.15 R)
    score = meteor_score([["zebra giraffe"], ["okapi lemur"]], ["zebra giraffe", ""], num_refs=1)
    assert score == pytest.approx(0.5 / (0.85 + 0.15 * 0.5), abs=1e-12)


def test_missing_java_is_a_one_line_error(tmp_path):
    (tmp_path / "r0").write_text("a b c")
    (tmp_path / "h").write_text("a b c")
    result = subprocess.run([sys.executable, str(ROOT / "eval" / "generation_eval.py"), "-R", str(tmp_path / "r0"),
                             "-H", str(tmp_path / "h"), "-nr", "1", "-m", "meteor"],
                            capture_output=True, text=True, env={"PATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("error: java: not found on PATH") and "apt-get install" in result.stderr
    assert result.stderr.count("\n") == 1


def test_missing_jar_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(java, "pycocoevalcap_dir", lambda: str(tmp_path))
    with pytest.raises(NLGError, match=r"paraphrase-en.gz: missing; reinstall"):
        java.meteor_jar()
