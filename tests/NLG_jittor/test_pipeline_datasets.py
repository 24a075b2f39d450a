"""WebNLG and DART through the cpu preset in both frameworks, micro sizes (scripts/run_all.py --only webnlg,dart).

The real data, the real commands and the cpu base's own build (SQuAD-train paragraphs, pretrained by the Jittor
tree), cut down with the pipeline's --extra / --test_inputs flags: 2 pretraining and 2 LoRA steps, 4 test inputs,
beam 2. Checks every file the runs write for the scorers, every score key (WebNLG on all / seen / unseen) and the
summary's rows."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from lora_nlg.data.tokenizer import EOS_ID
from testpaths import MIRROR

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATION_KEYS = {"bleu", "bleu_nltk", "meteor", "ter"}
SCORE_KEYS = {"webnlg": {f"{key}{suffix}" for key in GENERATION_KEYS for suffix in ("", "_seen", "_unseen")},
              "dart": GENERATION_KEYS}
TESTS = 4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run_all")
    valid = tmp / "valid.jsonl"  # a tiny validation set keeps the evaluations instant
    valid.write_text(json.dumps({"context": [464, 3290, EOS_ID], "completion": [318, 257, EOS_ID]}) + "\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_all.py"), "--only", "webnlg,dart", "--source", str(MIRROR),
         "--out_root", str(tmp / "runs"), "--data_root", str(tmp / "data"), "--base_dir", str(tmp / "hf_base"),
         "--img_dir", str(tmp / "img"), "--test_inputs", str(TESTS),
         "--extra", "corpus=--paragraphs 40 --valid_paragraphs 4",
         "--extra", f"pretrain=--max_step 2 --train_batch_size 4 --log_interval 1 --valid_data {valid}",
         "--extra", f"train=--max_step 2 --log_interval 1 --valid_data {valid}",
         "--extra", "beam=--beam 2 --eval_len 6"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return tmp, result.stdout


@pytest.mark.parametrize("dataset", ["webnlg", "dart"])
@pytest.mark.parametrize("framework", ["pytorch", "jittor"])
def test_every_model_is_decoded_and_scored(runs, dataset, framework):
    tmp, _ = runs
    subsets = ("", "_seen", "_unseen") if dataset == "webnlg" else ("",)
    for folder in (tmp / "runs" / dataset / framework, tmp / "runs" / dataset / framework / "zero_shot"):
        assert set(json.loads((folder / "scores.json").read_text())) == SCORE_KEYS[dataset]
        (predictions,) = folder.glob("predict.b2p08*.jsonl")  # beam 2, the dataset's other beam settings
        assert len(predictions.read_text().splitlines()) == TESTS
        lines = {}
        for suffix in subsets:
            # (lines as GenerationEval reads them: a missing reference is an empty line, the last one unterminated)
            hypotheses = (folder / f"hypothesis_{dataset}{suffix}").read_text().split("\n")
            references = sorted((folder / f"references_{dataset}{suffix}").iterdir())
            assert [path.name for path in references] == [f"reference{i}" for i in range(6)]
            assert all(len(path.read_text().split("\n")) == len(hypotheses) for path in references)
            lines[suffix] = len(hypotheses)
        assert lines[""] == TESTS
        if dataset == "webnlg":  # the spread test inputs hold both seen and unseen categories
            assert lines["_seen"] > 0 and lines["_unseen"] > 0 and lines["_seen"] + lines["_unseen"] == TESTS


def test_the_base_is_built_once_by_the_jittor_tree_for_both(runs):
    tmp, stdout = runs
    assert "[pipeline] pretrain base (jittor): finished in" in stdout
    assert stdout.count("[pipeline] pretrain base (jittor): done earlier, skipped") == 1  # DART reuses it
    assert json.loads((tmp / "runs" / "base" / "log.jsonl").read_text().splitlines()[0])["framework"] == "jittor"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in (tmp / "hf_base").iterdir()}


def test_summary_has_every_dataset_framework_and_model(runs):
    tmp, _ = runs
    summary = (tmp / "runs" / "summary.md").read_text()
    for dataset, metrics in (("webnlg", "BLEU all | BLEU seen | BLEU unseen | METEOR all | TER all"),
                             ("dart", "BLEU | METEOR | TER")):
        section = summary.split(f"### {dataset}\n")[1].split("###")[0]
        assert f"| framework | model | trainable params | training | {metrics} |" in section
        for framework in ("pytorch", "jittor"):
            assert f"| {framework} | base, zero-shot | 0 | - |" in section
            assert f"| {framework} | LoRA | 73,728 |" in section
        assert "- LoRA, BLEU" in section and "frameworks differ by" in section
        assert (tmp / "img" / f"{dataset}_cpu_alignment.png").stat().st_size > 0
        assert "pytorch" in (tmp / "runs" / dataset / "alignment.md").read_text()
    assert "| webnlg |" in summary and "| dart |" in summary and "| **total** |" in summary
