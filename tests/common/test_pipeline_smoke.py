"""The cpu demo end to end on a micro setting (PyTorch; ~30 s): every stage runs, then a re-run skips them all.

Real commands on the real mirror; only sizes are cut down (2 training steps, 3 test inputs, beam 2),
through the pipeline's own --extra / --test_inputs flags."""
import json
import os
import pathlib
import subprocess
import sys

from lora_nlg.checkpoints.hf_export import write_hf_gpt2
from lora_nlg.data.tokenizer import EOS_ID
from lora_nlg.model.config import get_card
from lora_nlg.model.init_weights import init_gpt2_weights
from testpaths import MIRROR

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_pipeline(tmp_path, valid):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "e2e", "--preset", "cpu",
         "--framework", "pytorch", "--source", str(MIRROR), "--out", str(tmp_path / "run"),
         "--data_root", str(tmp_path / "data"), "--base_dir", str(tmp_path / "hf_base"), "--test_inputs", "3",
         "--base_framework", "pytorch", "--extra", "corpus=--paragraphs 40 --valid_paragraphs 4",
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
    assert {p.name for p in (tmp_path / "hf_base").iterdir()} == {
        "model.safetensors", "config.json", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json"}  # read by transformers' AutoModelForCausalLM and AutoTokenizer
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
    log = tmp_path / "base" / "stages" / "train.log"  # the cpu base is built beside the dataset's run folder
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: stage 'pretrain base (pytorch)' failed (exit code 2); its log: {log}"
    assert f"error: {valid}: line 1: malformed JSON" in log.read_text()
    assert "zero-shot beam" not in result.stdout  # nothing after the failed stage ran


def test_squad_cpu_demo_answers_and_scores_em_f1(tmp_path):
    """SQuAD on a given random base (no pretraining): prepare 5% of the articles, 2 LoRA steps, greedy answers
    for 3 test questions, decode, official EM / F1."""
    write_hf_gpt2(tmp_path / "base", init_gpt2_weights(get_card("gpt2.tiny"), seed=1), get_card("gpt2.tiny"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pipeline.py"), "--dataset", "squad", "--preset", "cpu",
         "--framework", "pytorch", "--source", str(MIRROR), "--out", str(tmp_path / "run"),
         "--data_root", str(tmp_path / "data"), "--init_checkpoint", str(tmp_path / "base"), "--test_inputs", "3",
         "--extra", "train=--max_step 2 --log_interval 1", "--extra", "beam=--eval_len 4"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    for folder in (tmp_path / "run" / "pytorch", tmp_path / "run" / "pytorch" / "zero_shot"):
        scores = json.loads((folder / "scores.json").read_text())
        assert set(scores) == {"exact_match", "f1"} and all(0 <= value <= 100 for value in scores.values())
        predictions = json.loads((folder / "squad_pred.json").read_text())
        reference = json.loads((folder / "squad_ref.json").read_text())
        ids = [qa["id"] for article in reference["data"] for p in article["paragraphs"] for qa in p["qas"]]
        assert len(ids) >= 3 and set(predictions) == set(ids) and all("\n" not in a for a in predictions.values())
    manifest = json.loads((tmp_path / "data" / "squad" / "sampled_5pct" / "manifest.json").read_text())
    assert manifest["fraction"] == 0.05 and manifest["squad"]["seq_len"] == 160
    assert manifest["squad"]["test_window"] == "answer"
