"""run_all's summary (lora_nlg/pipeline/overview.py) and its command line: scales, comparisons, refused flags."""
import pathlib
import subprocess
import sys

from lora_nlg.pipeline import overview

ROOT = pathlib.Path(__file__).resolve().parents[2]


def row(framework, model, scores, trainable=None, seconds=None):
    return {"framework": framework, "model": model, "trainable": trainable, "train_seconds": seconds,
            "scores": scores}


E2E = {"BLEU": 0.3, "NIST": 3.5, "METEOR": 0.2, "ROUGE_L": 0.45, "CIDEr": 0.8}


def test_e2e_rows_are_scaled_as_the_papers_table_and_compared():
    rows = [row("pytorch", "base, zero-shot", {**E2E, "BLEU": 0.05}),
            row("pytorch", "LoRA", E2E, 73728, 125.0),
            row("jittor", "base, zero-shot", {**E2E, "BLEU": 0.05}),
            row("jittor", "LoRA", {**E2E, "BLEU": 0.315}, 73728, 61.2),
            row("jittor", "full fine-tuning", {**E2E, "BLEU": 0.25}, 7431040, 300.0)]
    lines = overview.dataset_section("e2e", rows)
    assert lines[2] == "| framework | model | trainable params | training | BLEU | NIST | METEOR | ROUGE-L | CIDEr |"
    assert "| pytorch | LoRA | 73,728 | 2m05.0s | 30.00 | 3.50 | 20.00 | 45.00 | 0.80 |" in lines
    assert "| pytorch | base, zero-shot | 0 | - | 5.00 | 3.50 | 20.00 | 45.00 | 0.80 |" in lines
    assert "- base, zero-shot, BLEU: frameworks differ by 0.00" in lines
    assert "- LoRA, BLEU: frameworks differ by 1.50; over the zero-shot base: pytorch +25.00, jittor +26.50" in lines
    assert "- full fine-tuning, BLEU: over the zero-shot base: jittor +20.00" in lines  # one framework only


def test_generation_and_squad_metrics_and_a_missing_score():
    webnlg = overview.dataset_section("webnlg", [row("pytorch", "LoRA", {"bleu": 21.5, "bleu_seen": 30.0,
                                                                          "meteor": 0.21, "ter": 0.7}, 1, 1.0)])
    assert "| pytorch | LoRA | 1 | 1.0s | 21.50 | 30.00 | n/a | 0.21 | 0.70 |" in webnlg
    squad = overview.dataset_section("squad", [row("jittor", "LoRA", {"f1": 41.234, "exact_match": 30.0}, 5, 2.0)])
    assert squad[2].endswith("| F1 | EM |") and "| jittor | LoRA | 5 | 2.0s | 41.23 | 30.00 |" in squad


def test_markdown_lists_each_run_and_the_total():
    text = overview.markdown("All", "bash scripts/run_all.sh", {"dart": [row("pytorch", "LoRA", {"bleu": 1.0})]},
                             [("dart", 61.0, 2.0), ("e2e (full fine-tuning)", 5.0, 6.0)], 8.5)
    assert text.startswith("# All\n\n`bash scripts/run_all.sh`\n\n### dart\n")
    assert ("| dart | 1m01.0s | 2.0s |\n| e2e (full fine-tuning) | 5.0s | 6.0s |\n| **total** | 1m06.0s | 8.5s |"
            in text)  # the recorded stage times add up; the wall time is this call's (it skipped dart's stages)


def test_run_all_refuses_flags_it_sets_and_unknown_runs():
    for argv, problem in ((["--dataset", "e2e"], "--dataset: run_all sets it for each run"),
                          (["--out=x"], "--out: run_all sets it for each run"),
                          (["--only", "e2e,wikibio"], "'wikibio': choose from e2e, webnlg, dart, squad, e2e_qv")):
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_all.py"), *argv], capture_output=True,
                                text=True)
        assert result.returncode == 2 and problem in result.stderr.strip().splitlines()[-1], result.stderr
