"""The host reads of one training step, counted on CPU: the mirror of tests/NLG_pytorch/test_host_syncs.py.

Every way a Var's value reaches Python (item, numpy, tolist, data, bool/float/int, jt.nonzero's data-dependent
shape) is wrapped and listed as "<what> in <file>:<function>". A step of the real loop reads its loss and, under
--fp16, whether the gradients are finite; nothing else. Jittor is lazy: its jt.sync calls (AdamW.backward and
.step run the graph there, so that no graph outlives a batch) execute queued work without reading anything back;
they are listed apart."""
import os
import sys

import pytest

import gpt2_ft
from alignment.train_runs import MICRO, SEED, micro_argv
from jittor_env import jt
from lora_nlg.data.batching import TrainBatches, load_encoded
from lora_nlg.model.config import LoRAConfig
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.train import loop
from model import GPT2LMModel, mask_index
from optim import AdamW

VAR_READS = ("item", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__", "fetch_sync")
MODULE_READS = ("nonzero",)


class SyncRecorder:
    """Wraps the reads (and jt.sync) while `on`; `calls` / `flushes` list them as "<name> in <file>:<function>"."""

    def __init__(self, monkeypatch):
        self.on, self.calls, self.flushes = False, [], []
        for owner, names in ((jt.Var, VAR_READS), (jt, MODULE_READS)):
            for name in names:
                monkeypatch.setattr(owner, name, self.wrap(name, getattr(owner, name), self.calls))
        data = jt.Var.data
        monkeypatch.setattr(jt.Var, "data", property(self.wrap("data", data.__get__, self.calls)))
        monkeypatch.setattr(jt, "sync", self.wrap("sync", jt.sync, self.flushes))

    def wrap(self, name, original, into):
        def read(*args, **kwargs):
            if self.on:
                caller = sys._getframe(1).f_code
                into.append(f"{name} in {os.path.basename(caller.co_filename)}:{caller.co_name}")
            return original(*args, **kwargs)
        return read

    def during(self, function):
        def recorded(*args, **kwargs):
            self.on = True
            try:
                return function(*args, **kwargs)
            finally:
                self.on = False
        return recorded


def test_the_recorder_sees_the_syncs_a_step_used_to_have(monkeypatch):
    """Positive control: the nonzero of a loss without a host index, float() of a clip norm, an item per gradient."""
    recorder = SyncRecorder(monkeypatch)
    model = GPT2LMModel(MICRO, LoRAConfig(4, 32.0, 0.0))
    ids = jt.zeros((2, 8), dtype="int64")

    def old_style():
        loss, _ = model.loss(model(ids)[0], ids, jt.ones((2, 8)))
        float(loss)
        jt.isfinite(loss).all().item()

    recorder.during(old_style)()
    assert recorder.calls == ["nonzero in model.py:loss", "__float__ in test_host_syncs.py:old_style",
                              "item in __init__.py:to_float", "item in test_host_syncs.py:old_style"]


def test_the_host_index_gives_the_bit_identical_loss_and_gradients(data):
    lora = LoRAConfig(4, 32.0, 0.0)
    model = GPT2LMModel(MICRO, lora)
    model.load_weights({**init_gpt2_weights(MICRO, SEED), **init_lora_weights(MICRO, lora, SEED)})
    optimizer = AdamW(list(model.named_parameters()))
    batch = next(TrainBatches(load_encoded(data[0]), 4, 32, SEED).epoch(1))
    assert batch.mask.min() == 0  # some positions are left out, so the index matters
    results = []
    for index in (None, jt.array(mask_index(batch.mask))):
        optimizer.zero_grad()
        loss, n = model.loss(model(jt.array(batch.input))[0], jt.array(batch.target), jt.array(batch.mask), 0.1,
                             index)
        optimizer.backward(loss)
        results.append((loss.item(), n, {name: g.numpy().copy() for name, g in optimizer.grads.items()}))
    (device_loss, device_n, device_grads), (host_loss, host_n, host_grads) = results
    assert (host_loss, host_n) == (device_loss, device_n) and host_n == int((batch.mask > 0).sum())
    for name, grad in device_grads.items():
        assert (host_grads[name] == grad).all(), name


@pytest.mark.parametrize("flags, per_step", [
    ((), ["item in gpt2_ft.py:train_batch"]),
    (("--fp16", "--lora_dropout", "0"), ["item in gpt2_ft.py:train_batch", "item in gpt2_ft.py:update"]),
])
def test_a_training_step_reads_back_only_its_loss_and_the_fp16_finite_check(data, tmp_path, monkeypatch, flags,
                                                                           per_step):
    recorder = SyncRecorder(monkeypatch)
    steps, flushes = [], []

    def train_step(run, batch):
        start, flushed = len(recorder.calls), len(recorder.flushes)
        result = recorder.during(original)(run, batch)
        steps.append(recorder.calls[start:])
        flushes.append(recorder.flushes[flushed:])
        return result

    original = loop.Run.train_step
    monkeypatch.setattr(loop.Run, "train_step", train_step)
    # grad_acc 2: steps 1 and 3 only accumulate, 2 and 4 also clip and update
    gpt2_ft.main(gpt2_ft.TrainEngine, micro_argv(data, tmp_path, "--max_step", "4", "--grad_acc", "2",
                                                 "--clip", "1.0", "--log_interval", "1", *flags))
    batch_only = ["item in gpt2_ft.py:train_batch"]
    assert steps == [batch_only, per_step, batch_only, per_step]
    backward, step = ["sync in optim.py:backward"], ["sync in optim.py:backward", "sync in optim.py:step"]
    if not flags:
        assert flushes == [backward, step, backward, step]
    else:  # an update skipped for overflow (Jittor's first ones at scale 65536) makes no AdamW step
        assert flushes[0] == flushes[2] == backward and all(f in (backward, step) for f in flushes[1::2])
