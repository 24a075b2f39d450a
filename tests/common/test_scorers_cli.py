"""Scorer CLIs and file readers: bad input is one line `error: <file>: <problem>` and exit code 2.

None of these cases reaches Java, so they run in milliseconds.
"""
import pytest

from lora_nlg.metrics import e2e, generation
from lora_nlg.util.errors import NLGError
from testpaths import run_script


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_e2e_references_grouped_by_blank_lines(tmp_path):
    path = write(tmp_path / "refs", "a 1\na 2\n\nb 1\n\n")
    assert e2e.read_references(path) == [["a 1", "a 2"], ["b 1"]]
    assert e2e.read_references(write(tmp_path / "single", "a\nb\n")) == [["a"], ["b"]]


def test_e2e_lines_split_and_strip_like_the_official_reader(tmp_path):
    assert e2e.read_lines(write(tmp_path / "p", " x \r\ny\u2028z\n")) == ["x", "y", "z"]


def test_e2e_two_blank_lines_in_a_row_are_an_error(tmp_path):
    with pytest.raises(NLGError, match=r"refs: line 3: blank line"):
        e2e.read_references(write(tmp_path / "refs", "a\n\n\nb\n"))


def test_measure_scores_count_mismatch(tmp_path):
    refs = write(tmp_path / "refs", "a 1\n\nb 1\n")
    preds = write(tmp_path / "preds", "a 1\n")
    assert_one_line_error(run_script("eval/measure_scores.py", refs, preds), f"{preds}: 1 predictions but", "2 inputs")


def test_measure_scores_missing_file(tmp_path):
    assert_one_line_error(run_script("eval/measure_scores.py", tmp_path / "nope", tmp_path / "nope2"),
                          f"{tmp_path / 'nope'}: cannot read")


def test_generation_reference_files_by_prefix(tmp_path):
    write(tmp_path / "ref0", "a\nb")
    write(tmp_path / "ref1", "c\nd")
    write(tmp_path / "hyp", "x\ny")
    references, hypotheses = generation.read_instances(str(tmp_path / "ref"), tmp_path / "hyp", 2)
    assert (references, hypotheses) == ([["a", "c"], ["b", "d"]], ["x", "y"])
    assert generation.reference_paths("p", 1) == ["p"]


def test_generation_eval_counts_a_final_newline_as_an_empty_line(tmp_path):
    ref = write(tmp_path / "ref0", "a b c")
    hyp = write(tmp_path / "hyp", "a b c\n")
    assert_one_line_error(run_script("eval/generation_eval.py", "-R", ref, "-H", hyp, "-nr", 1),
                          f"{ref}: 1 lines but {hyp} has 2 (as in GenerationEval, a final newline")


def test_generation_reads_an_empty_last_hypothesis_as_decode_writes_it(tmp_path):
    write(tmp_path / "ref0", "a\nb")
    hyp = write(tmp_path / "hyp", "a\n")
    assert generation.read_instances(str(tmp_path / "ref0"), hyp, 1) == ([["a"], ["b"]], ["a", ""])


def test_generation_eval_refuses_crlf(tmp_path):
    ref = write(tmp_path / "ref0", "a b\r\nc d")
    write(tmp_path / "hyp", "a b\nc d")
    assert_one_line_error(run_script("eval/generation_eval.py", "-R", ref, "-H", tmp_path / "hyp", "-nr", 1),
                          f"{ref}: line 1: contains U+000D")


def test_generation_eval_line_count_mismatch_names_the_file(tmp_path):
    write(tmp_path / "ref0", "a\nb")
    write(tmp_path / "ref1", "a")
    write(tmp_path / "hyp", "a\nb")
    result = run_script("eval/generation_eval.py", "-R", tmp_path / "ref", "-H", tmp_path / "hyp", "-nr", 2)
    assert_one_line_error(result, f"{tmp_path / 'ref1'}: 1 lines but")


def test_generation_eval_model_based_metrics_are_refused():
    assert_one_line_error(run_script("eval/generation_eval.py", "-R", "r", "-H", "h", "-m", "bleu,bert"),
                          "bert: needs a model download")


def test_generation_eval_without_java_metrics_runs_offline(tmp_path):
    write(tmp_path / "ref0", "The cat sat on the mat.\nA dog.")
    write(tmp_path / "hyp", "The cat sat on the mat.\nA dog.")
    result = run_script("eval/generation_eval.py", "-R", tmp_path / "ref0", "-H", tmp_path / "hyp", "-nr", 1,
                        "-m", "bleu,ter,chrf++")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "BLEU       100.00"
    assert "TER        0.000000" in result.stdout


@pytest.mark.parametrize("metric", ["bleu", "meteor", "chrf++", "ter"])
def test_generation_eval_on_empty_files_is_one_line_not_a_division_by_zero(tmp_path, metric):
    write(tmp_path / "ref0", "")
    write(tmp_path / "ref1", "")
    hypothesis = write(tmp_path / "hyp", "")
    result = run_script("eval/generation_eval.py", "-R", tmp_path / "ref", "-H", hypothesis, "-nr", 2, "-m", metric)
    assert_one_line_error(result, f"{hypothesis}: no text to score (it and every reference file are empty)")
