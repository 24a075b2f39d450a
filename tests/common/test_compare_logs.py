"""scripts/compare_logs.py on two synthetic runs whose differences are worked out by hand."""
import json
import struct
import subprocess
import sys

import pytest

from lora_nlg.pipeline.compare import curve_diff, final_metrics, read_run
from lora_nlg.util.errors import run_cli
from testpaths import ROOT, load_script

SCRIPT = ROOT / "scripts" / "compare_logs.py"
# a script, not a package module: loaded from its path to call it in-process (one subprocess test runs it for real)
compare_logs = load_script("scripts/compare_logs.py")


def _train(step, loss, avg_loss, ppl, lr, ms, tokens_per_s):
    return {"type": "train", "step": step, "epoch": 1, "batch": step, "loss": loss, "avg_loss": avg_loss,
            "ppl": ppl, "lr": lr, "ms_per_batch": ms, "tokens_per_s": tokens_per_s}


def _eval(step, valid_loss, valid_ppl):
    return {"type": "eval", "step": step, "eval": 1, "time_s": 1.0, "valid_loss": valid_loss, "valid_ppl": valid_ppl,
            "best_ppl": valid_ppl, "best_step": step, "epoch": 1}


RUN_A = [
    {"type": "start", "framework": "pytorch", "step": 0},
    _train(10, 3.0, 3.2, 24.0, 0.001, 100.0, 50.0),
    _train(20, 2.5, 2.7, 15.0, 0.002, 200.0, 40.0),
    _eval(20, 2.4, 11.0),
    _train(30, 2.0, 2.2, 9.0, 0.001, 600.0, 30.0),
    _eval(30, 2.6, 13.5),
]
RUN_B = [  # one more train line (step 40) and evals at 20 and 40: only steps 10-30 / 20 are common
    {"type": "start", "framework": "jittor", "step": 0},
    _train(10, 3.5, 3.2, 24.0, 0.001, 300.0, 10.0),
    _train(20, 2.5, 2.9, 15.0, 0.002, 100.0, 20.0),
    _eval(20, 2.3, 10.0),
    _train(30, 1.5, 2.0, 9.0, 0.001, 500.0, 30.0),
    _train(40, 1.0, 1.9, 8.0, 0.0, 700.0, 40.0),
    _eval(40, 2.0, 7.4),
]
# |A - B| at steps 10, 20, 30: loss 0.5, 0, 0.5; avg loss 0, 0.2, 0.2; ppl and lr 0; valid (step 20) 0.1 and 1
EXPECTED_DIFFS = """\
| curve | common steps | max abs diff | mean abs diff |
|---|---:|---:|---:|
| loss | 3 | 0.5 | 0.3333 |
| avg loss | 3 | 0.2 | 0.1333 |
| ppl | 3 | 0 | 0 |
| valid loss | 1 | 0.1 | 0.1 |
| valid ppl | 1 | 1 | 1 |
| learning rate | 3 | 0 | 0 |
"""
# A: best valid ppl 11 at step 20 (step 30 is worse), medians ms 200 (100, 200, 600), tokens/s 40;
# B: median ms (300 + 500) / 2 = 400, tokens/s (20 + 30) / 2 = 25; only A has a scores.json
EXPECTED_METRICS = """\
| metric | torch run | jittor run |
|---|---:|---:|
| last step | 30 | 40 |
| final loss | 2 | 1 |
| final avg loss | 2.2 | 1.9 |
| final valid loss | 2.6 | 2 |
| final valid ppl | 13.5 | 7.4 |
| best valid ppl | 11 | 7.4 |
| best step | 20 | 40 |
| ms/batch (median) | 200 | 400 |
| tokens/s (median) | 40 | 25 |
| BLEU | 0.6841 | n/a |
"""


def _write_run(folder, events, scores=None):
    folder.mkdir()
    (folder / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if scores is not None:
        (folder / "scores.json").write_text(json.dumps(scores))
    return folder


@pytest.fixture
def two_runs(tmp_path):
    return (_write_run(tmp_path / "a", RUN_A, {"BLEU": 0.68414}), _write_run(tmp_path / "b", RUN_B))


def _compare(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def _error_of(capsys, *args):
    """The one-line error and exit code 2 of an in-process run."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(compare_logs.main, [str(a) for a in args])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith("error: ")
    return captured.err


def test_table_gives_the_hand_computed_differences_and_final_metrics(two_runs, tmp_path):
    out, md = tmp_path / "img" / "cmp.png", tmp_path / "cmp.md"
    result = _compare(*two_runs, "--out", out, "--labels", "torch run", "jittor run", "--md", md)
    assert result.returncode == 0, result.stderr
    table = EXPECTED_DIFFS + "\n" + EXPECTED_METRICS
    assert result.stdout == table + f"wrote {out} and {md}\n"
    assert md.read_text() == table
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1650, 880)  # one 15 x 8 inch figure at 110 dpi


def test_labels_default_to_the_run_folders(two_runs, tmp_path, capsys):
    compare_logs.main([str(two_runs[0]), str(two_runs[1] / "log.jsonl"), "--out", str(tmp_path / "cmp.png")])
    assert "| metric | a | b |" in capsys.readouterr().out


def test_a_resumed_run_and_a_text_log_read_as_one_unbroken_run(tmp_path):
    """The killed run logged step 30 after its last save (step 20); the resumed run logs step 30 again."""
    resumed = RUN_A[:3] + [_train(30, 9.9, 9.9, 99.0, 0.001, 1.0, 1.0),
                           {"type": "start", "step": 20, "resume_step": 20}] + RUN_A[3:]
    run = read_run(str(_write_run(tmp_path / "resumed", resumed)), "resumed")
    assert run.curves["loss"].steps.tolist() == [10, 20, 30] and run.curves["loss"].values.tolist() == [3.0, 2.5, 2.0]
    text = tmp_path / "log.txt"  # the reference's printed lines (2 decimals)
    text.write_text("| epoch   1 step       10 |     10 batches | lr 0.001 | ms/batch 100.00 | loss  3.00 "
                    "| avg loss  3.21 | ppl 24.78\n")
    reference = read_run(str(text), "reference")
    assert curve_diff(run.curves["avg_loss"], reference.curves["avg_loss"]).max_abs == pytest.approx(0.01)
    assert final_metrics(reference)["last step"] == 10 and reference.eval_events == []


@pytest.mark.parametrize("make, problem", [
    (lambda d: d / "missing", "no such run directory or log file"),
    (lambda d: d, "no log.jsonl in this directory"),
    (lambda d: _write_run(d / "empty", [{"type": "start", "step": 0}]), "no training lines"),
    (lambda d: _write_run(d / "bad", RUN_A, {"BLEU": "high"}), "scores.json: not a flat JSON object of numbers"),
])
def test_bad_runs_are_one_line_errors(two_runs, tmp_path, capsys, make, problem):
    assert problem in _error_of(capsys, two_runs[0], make(tmp_path), "--out", tmp_path / "cmp.png")
    assert not (tmp_path / "cmp.png").exists()


def test_out_must_be_a_png(two_runs, tmp_path, capsys):
    assert _error_of(capsys, *two_runs, "--out", tmp_path / "cmp.pdf") == \
        f"error: {tmp_path / 'cmp.pdf'}: --out must name a .png file\n"
