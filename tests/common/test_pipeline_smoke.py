"""The cpu demo end to end on a micro setting (PyTorch; ~30 s): every stage runs, then a re-run skips them all.

Real commands on the real mirror; only sizes are cut down (2 training steps, 3 test inputs, beam 2),
through the pipeline's own --extra / --test_inputs flags."""
import json
import os
import pathlib
import subprocess
import sys

from lora_nlg.tokenizer import EOS_ID
from testpaths import MIRROR

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_pipeline(tmp_path, valid):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "e2e", "--preset", "cpu",
         "--framework", "pytorch", "--source", str(MIRROR), "--out", str(tmp_path / "run"),
         "--data_root", str(tmp_path / "data"), "--base_dir", str(tmp_path / "base"), "--test_inputs", "3",
         "--extra", "corpus=--limit 60 --valid_examples 4",
         "--extra", f"pretrain=--max_step 2 --train_batch_size 4 --log_interval 1 --valid_data {valid}",
         "--extra", f"train=--max_step 2 --log_interval 1 --valid_data {valid}",
         "--extra", "beam=--beam 2 --eval_len 6"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # micro shapes: threads only wait


def test_cpu_demo_runs_end_to_end_then_skips_finished_stages(tmp_path):
    valid = tmp_path / "valid.jsonl"  # a tiny validation set keeps the evaluations instant
    valid.write_text(json.dumps({"context": [464, 3290, EOS_ID], "completion": [318, 257, EOS_ID]}) + "\n")
    first = run_pipeline(tmp_path, valid)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    run = tmp_path / "run"
    for folder in (run / "pytorch", run / "pytorch" / "zero_shot"):
        scores = json.loads((folder / "scores.json").read_text())
        assert set(scores) == {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
        assert len((folder / "predict.b2p08r4.jsonl").read_text().splitlines()) == 3
        assert len((folder / "e2e_pred.txt").read_text().splitlines()) == 3
    assert {p.name for p in (tmp_path / "base").iterdir()} == {"model.safetensors", "config.json"}
    summary = (run / "summary.md").read_text()
    assert "| pytorch | base, zero-shot |" in summary and "| pytorch | LoRA |" in summary
    assert "| pretrain base (pytorch) |" in summary and "| **total** |" in summary
    assert "[pipeline] train (pytorch): finished in" in first.stdout

    second = run_pipeline(tmp_path, valid)
    assert second.returncode == 0, second.stderr
    ran = [line for line in second.stdout.splitlines() if line.startswith("[pipeline]") and "skipped" not in line]
    assert ran == [] and second.stdout.count("done earlier, skipped") == 12


def test_failed_stage_stops_the_pipeline_and_names_its_log(tmp_path):
    valid = tmp_path / "broken.jsonl"
    valid.write_text("not json\n")
    result = run_pipeline(tmp_path, valid)
    log = tmp_path / "run" / "base" / "stages" / "train.log"
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: stage 'pretrain base (pytorch)' failed (exit code 2); its log: {log}"
    assert f"error: {valid}: line 1: malformed JSON" in log.read_text()
    assert "zero-shot beam" not in result.stdout  # nothing after the failed stage ran
