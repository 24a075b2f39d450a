"""Training logs: the reference's line format (round trip of the prior reproduction's README log), jsonl,
reading a resumed run."""
import json
import math

import pytest

from lora_nlg.train import logs
from lora_nlg.util.errors import NLGError

# lines of the training log printed by microsoft/LoRA's gpt2_ft.py, as quoted in the prior reproduction's README
SEED_LOG = """\
eval samples: 400 loss: tensor(1.0887, device='cuda:0')
average loss 1.364281438220115
----------------------------------------------------------------------------------------------------
| Eval   1 at step     2000 | time: 35.43s | valid loss  1.36 | valid ppl  3.91 | best ppl  3.91\x20
----------------------------------------------------------------------------------------------------
| epoch   2 step     2100 |    207 batches | lr 0.000164 | ms/batch 728.20 | loss  2.57 | avg loss  2.67 | ppl 14.51
| epoch   2 step     2300 |    407 batches | lr 0.00016 | ms/batch 372.78 | loss  2.73 | avg loss  2.64 | ppl 14.05
| epoch   2 step     3000 |   1107 batches | lr 0.000144 | ms/batch 373.31 | loss  2.54 | avg loss  2.68 | ppl 14.55
saving checkpoint /root/autodl-tmp/trained_models/GPT2_M/e2e/model.3000.pt
start to train the model................ 3
"""


def test_seed_log_lines_parse_and_format_back_identically():
    lines = SEED_LOG.splitlines()
    events = logs.parse_log_lines(lines)
    assert [e["type"] for e in events] == ["eval", "train", "train", "train", "save"]
    assert logs.eval_line(events[0]) == lines[3]
    assert [logs.train_line(e) for e in events[1:4]] == [lines[5], lines[6], lines[7]]
    assert events[1] == {"type": "train", "epoch": 2, "step": 2100, "batch": 207, "lr": 0.000164,
                         "ms_per_batch": 728.20, "loss": 2.57, "avg_loss": 2.67, "ppl": 14.51}
    assert events[4] == {"type": "save", "path": "/root/autodl-tmp/trained_models/GPT2_M/e2e/model.3000.pt",
                         "step": 3000}


def test_wide_and_older_reference_lines_parse():
    # big values overflow the widths; microsoft/LoRA's first version had no space before "| ms/batch"
    wide = logs.train_line({"epoch": 12, "step": 123456789, "batch": 1234567, "lr": 1.5e-05,
                            "ms_per_batch": 12345.678, "loss": 10.82, "avg_loss": 10.84, "ppl": 50929.81})
    assert wide == ("| epoch  12 step 123456789 | 1234567 batches | lr 1.5e-05 | ms/batch 12345.68 | loss 10.82 "
                    "| avg loss 10.84 | ppl 50929.81")
    old = ("| epoch   1 step      100 |    100 batches | lr 4e-05| ms/batch 380.12 | loss  3.10 | avg loss  3.40 "
           "| ppl 29.96")
    (event,) = logs.parse_log_lines([wide, old])[1:]
    assert (event["lr"], event["ms_per_batch"], event["ppl"]) == (4e-05, 380.12, 29.96)
    assert logs.parse_log_lines([wide])[0]["lr"] == 1.5e-05


def _write_run(work_dir, append, steps, resume_step=None):
    log = logs.TrainLog(work_dir, append=append, echo=lambda text: None)
    if resume_step is not None:
        fields = {"step": resume_step, "epoch": 1, "batch": resume_step, "resume_step": resume_step}
        log.line(logs.resume_line(fields))
        log.event("start", **fields)
    for step in steps:
        log.train(epoch=1, step=step, batch=step, lr=1e-4, ms_per_batch=5.0, loss=2.0 + step, avg_loss=2.0 + step,
                  ppl=math.exp(2.0 + step), tokens_per_s=1.0)
        if step % 2 == 0:
            log.eval(eval=step // 2, step=step, epoch=1, time_s=0.5, valid_loss=1.0 / step,
                     valid_ppl=math.exp(1.0 / step), best_ppl=math.exp(1.0 / step))
            log.save(str(work_dir / f"model.{step}.safetensors"), step=step, epoch=1, kind="checkpoint")
    log.close()


def test_a_resumed_run_reads_as_one_unbroken_run_from_both_files(tmp_path):
    _write_run(tmp_path, append=False, steps=[1, 2, 3, 4, 5])  # killed after step 5, last state at step 4
    _write_run(tmp_path, append=True, steps=[5, 6], resume_step=4)
    for name in ("log.txt", "log.jsonl"):
        events = logs.read_log(tmp_path / name)
        train = [e["step"] for e in events if e["type"] == "train"]
        assert train == [1, 2, 3, 4, 5, 6], name
        assert [e["step"] for e in events if e["type"] == "eval"] == [2, 4, 6], name
        assert [e["step"] for e in events if e["type"] == "save"] == [2, 4, 6], name
        assert [e["loss"] for e in events if e["type"] == "train"] == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0], name
    text = (tmp_path / "log.txt").read_text()
    assert "resuming from step 4 (epoch 1, batch 4)\n" in text
    assert text.count("| epoch ") == 7  # the text file keeps everything (step 5 twice); the reader merges


def test_a_fresh_run_starts_the_files_anew(tmp_path):
    _write_run(tmp_path, append=False, steps=[1, 2, 3])
    _write_run(tmp_path, append=False, steps=[1])
    assert [e["step"] for e in logs.read_log(tmp_path / "log.jsonl")] == [1]
    assert (tmp_path / "log.txt").read_text().count("| epoch") == 1


def test_non_finite_numbers_are_valid_json(tmp_path):
    log = logs.TrainLog(tmp_path, echo=lambda text: None)
    log.event("diverged", loss=math.nan, ppl=math.inf, nested={"x": [-math.inf]})
    log.close()
    line = (tmp_path / "log.jsonl").read_text()
    assert json.loads(line) == {"type": "diverged", "loss": "nan", "ppl": "inf", "nested": {"x": ["-inf"]}}
    assert logs.perplexity(1000.0) == math.inf and logs.perplexity(0.0) == 1.0


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"type": "train", "step": 1}\n{"step": 2}\n')
    with pytest.raises(NLGError, match=r"log\.jsonl: line 2: not a log event"):
        logs.read_log(path)
    path.write_text('{"type": "train"}\n{oops\n')
    with pytest.raises(NLGError, match=r"log\.jsonl: line 2: malformed JSON"):
        logs.read_log(path)
    with pytest.raises(NLGError, match=r"missing\.txt: cannot read"):
        logs.read_log(tmp_path / "missing.txt")


def test_a_resumed_log_drops_the_half_line_a_killed_run_left(tmp_path):
    (tmp_path / logs.LOG_JSONL).write_text('{"type": "train", "step": 1}\n{"type": "tra')
    (tmp_path / logs.LOG_TEXT).write_text("| epoch   1 step 1\n| epo")
    log = logs.TrainLog(tmp_path, append=True, echo=lambda text: None)
    log.event("start", step=1, resume_step=1)
    log.line("resuming from step 1")
    log.close()
    assert [e["type"] for e in logs.read_log(tmp_path / logs.LOG_JSONL)] == ["train", "start"]
    assert (tmp_path / logs.LOG_TEXT).read_text() == "| epoch   1 step 1\nresuming from step 1\n"
