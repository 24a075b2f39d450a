"""The host syncs of one training step, counted on CPU: every way a tensor's value reaches Python is wrapped
(torch.cuda.set_sync_debug_mode would say the same on CUDA, but only there) and each call is listed as
"<what> in <file>:<function>". A step of the real loop (lora_nlg.train.loop.Run.train_step) reads its loss and,
under --fp16, whether the gradients are finite; nothing else (no nonzero in the loss, no float in clipping).

The CUDA-only sync of a step, the input copies to the GPU (a pageable .to(cuda) waits for the copy), is avoided by
TrainEngine.tensors (pinned memory, non_blocking) and cannot be observed here."""
import os
import sys

import pytest
import torch

import gpt2_ft
from alignment.train_runs import MICRO, SEED, micro_argv
from lora_nlg.data.batching import TrainBatches, load_encoded
from lora_nlg.model.config import LoRAConfig
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
from lora_nlg.train import loop
from model import GPT2LMModel, mask_index

TENSOR_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero")
MODULE_READS = ("nonzero", "is_nonzero", "equal")


pytestmark = pytest.mark.usefixtures("one_thread")  # (the micro card: conftest.py)


class SyncRecorder:
    """Wraps the reads while `on`; `calls` lists them as "<name> in <file>:<function>" of the caller."""

    def __init__(self, monkeypatch):
        self.on, self.calls = False, []
        for owner, names in ((torch.Tensor, TENSOR_READS), (torch, MODULE_READS)):
            for name in names:
                monkeypatch.setattr(owner, name, self.wrap(name, getattr(owner, name)))

    def wrap(self, name, original):
        def read(*args, **kwargs):
            if self.on:
                caller = sys._getframe(1).f_code
                self.calls.append(f"{name} in {os.path.basename(caller.co_filename)}:{caller.co_name}")
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
    """Positive control: the nonzero of a loss without a host index, float() of a clip norm, a bool per gradient."""
    recorder = SyncRecorder(monkeypatch)
    model = GPT2LMModel(MICRO, LoRAConfig(4, 32.0, 0.0))
    ids = torch.zeros(2, 8, dtype=torch.long)

    def old_style():
        loss, _ = model.loss(model(ids)[0], ids, torch.ones(2, 8))
        float(loss.detach())
        bool(torch.isfinite(loss).all())

    recorder.during(old_style)()
    assert recorder.calls == ["nonzero in model.py:loss", "__float__ in test_host_syncs.py:old_style",
                              "__bool__ in test_host_syncs.py:old_style"]


def test_the_host_index_gives_the_bit_identical_loss_and_gradients(data):
    lora = LoRAConfig(4, 32.0, 0.0)
    model = GPT2LMModel(MICRO, lora)
    model.load_weights({**init_gpt2_weights(MICRO, SEED), **init_lora_weights(MICRO, lora, SEED)})
    batch = next(TrainBatches(load_encoded(data[0]), 4, 32, SEED).epoch(1))
    assert batch.mask.min() == 0  # some positions are left out, so the index matters
    results = []
    for index in (None, torch.from_numpy(mask_index(batch.mask))):
        model.zero_grad()
        loss, n = model.loss(model(torch.from_numpy(batch.input))[0], torch.from_numpy(batch.target),
                             torch.from_numpy(batch.mask), 0.1, index)
        loss.backward()
        results.append((loss.item(), n, {name: p.grad.clone() for name, p in model.named_parameters()}))
    (device_loss, device_n, device_grads), (host_loss, host_n, host_grads) = results
    assert (host_loss, host_n) == (device_loss, device_n) and host_n == int((batch.mask > 0).sum())
    for name, grad in device_grads.items():
        assert torch.equal(host_grads[name], grad), name


@pytest.mark.parametrize("flags, per_step", [
    ((), ["item in gpt2_ft.py:train_batch"]),
    (("--fp16",), ["item in gpt2_ft.py:train_batch", "item in gpt2_ft.py:update"]),
])
def test_a_training_step_reads_back_only_its_loss_and_the_fp16_finite_check(data, tmp_path, monkeypatch, flags,
                                                                           per_step):
    recorder = SyncRecorder(monkeypatch)
    steps = []

    def train_step(run, batch):
        start = len(recorder.calls)
        result = recorder.during(original)(run, batch)
        steps.append(recorder.calls[start:])
        return result

    original = loop.Run.train_step
    monkeypatch.setattr(loop.Run, "train_step", train_step)
    # grad_acc 2: steps 1 and 3 only accumulate, 2 and 4 also clip and update
    gpt2_ft.main(gpt2_ft.TrainEngine, micro_argv(data, tmp_path, "--max_step", "4", "--grad_acc", "2",
                                                 "--clip", "1.0", "--log_interval", "1", *flags))
    batch_only = ["item in gpt2_ft.py:train_batch"]
    assert steps == [batch_only, per_step, batch_only, per_step]
