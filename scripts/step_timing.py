"""Milliseconds per LoRA training step (forward, backward, clip, AdamW), the same step in either framework.

    .venv-torch/bin/python  scripts/step_timing.py torch  --card gpt2.tiny
    .venv-jittor/bin/python scripts/step_timing.py jittor --card gpt2.tiny

Batch: 8 synthetic rows of 64 tokens (contexts of 40, completions of 24: loss on ~190 positions; --context,
--completion), LoRA r=4 on q,v (or --lora attn_mlp: the SQuAD project's r=8 on attention + MLP) with dropout 0.1,
label smoothing 0.1, clip 1.0; weights from the shared numpy init.
Warm-up steps (Jittor compiles its kernels there) are not timed; Jittor is synchronised every step.
--profile N: after the timed steps, one more step under the framework's profiler (torch.profiler, CPU self time;
jt.profile_scope, each fused kernel's time), and its N costliest operators with their share of the step.
"""
import argparse
import re
import statistics
import time

import numpy as np

from lora_nlg.data.batching import collate
from lora_nlg.model.config import LoRAConfig, get_card
from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights

FRAMEWORKS = ("torch", "jittor")  # each runs in its own venv, where its tree is installed

LORAS = {"qv": LoRAConfig(r=4, alpha=32, dropout=0.1, targets="q,v"),  # the paper's
         "attn_mlp": LoRAConfig(r=8, alpha=16, dropout=0.1, targets="attn,mlp")}  # the SQuAD project's


def timing_batch(config, rows=8, context=40, completion=24, seed=0):
    rng = np.random.default_rng(seed)
    examples = [(rng.integers(0, config.vocab_size, context).tolist(),
                 rng.integers(0, config.vocab_size, completion).tolist()) for _ in range(rows)]
    return collate(examples, list(range(rows)), seq_len=context + completion)


def framework_glue(framework, optimizer):
    """What differs between the trees around a step: (numpy -> tensor, the gradients to clip, wait for the
    device). It imports that framework only: one process never loads both."""
    if framework == "torch":
        import torch
        return (torch.from_numpy, lambda: [p.grad for p in optimizer.params.values()],
                lambda: None)  # loss.item() waits for the step
    from jittor_env import jt
    return jt.array, lambda: optimizer.grads.values(), lambda: jt.sync_all(True)


def training_step(framework, config, batch, lora):
    """A closure running one training step (forward, backward, clip, AdamW) in `framework`'s tree."""
    from lora import set_trainable
    from model import GPT2LMModel
    from optim import AdamW, clip_grad_norm
    model = GPT2LMModel(config, lora)
    model.load_weights({**init_gpt2_weights(config, 0), **init_lora_weights(config, lora, 0)})
    set_trainable(model, lora)
    model.train()
    optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad])
    tensor, gradients, sync = framework_glue(framework, optimizer)
    inputs, target, mask = (tensor(a) for a in (batch.input, batch.target, batch.mask))

    def step():
        loss, _ = model.loss(model(inputs)[0], target, mask, 0.1)
        optimizer.backward(loss)
        clip_grad_norm(gradients(), 1.0)
        optimizer.step(2e-4)
        optimizer.zero_grad()
        sync()
        return loss.item()
    return step


def profile_rows(framework, step):
    """[(operator, ms, calls)] of one step, costliest first, from the framework's own profiler."""
    if framework == "torch":
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        rows = [(e.key, e.self_cpu_time_total / 1000.0, e.count) for e in prof.key_averages()]
    else:
        from jittor_env import jt
        with jt.profile_scope() as report:
            step()
        header, *table = report
        name, total, count = (header.index(k) for k in ("Name", "TotalTime", "Count"))
        rows = [(row[name], float(row[total]) / 1e6, int(row[count])) for row in table]  # ns -> ms
    return sorted(rows, key=lambda row: -row[1])


def short_name(name):
    """An operator's name for a table: Jittor's fused-kernel keys («opkey0:binary«...«OP:add«...) become the
    operations they fuse (array / broadcast_to / reindex left out) and the float64 mark when any part is float64."""
    if "«opkey" not in name:
        return name.split("«")[0]
    ops = []
    for part in name.split("«opkey")[1:]:
        kind = part.split(":", 1)[1].split("«")[0]
        op = re.search(r"«OP:(\w+)", part)
        if kind not in ("array", "broadcast_to", "reindex", "reindex_reduce"):
            ops.append(op.group(1) if op else kind)
    counted = [f"{op} x{ops.count(op)}" if ops.count(op) > 1 else op for op in dict.fromkeys(ops)]
    return f"fused[{', '.join(counted) or 'copy'}]" + (" float64" if "float64" in name else "")


def print_profile(rows, top):
    total = sum(ms for _, ms, _ in rows)
    print(f"profile: {total:.1f} ms in {len(rows)} operators; the {top} costliest:")
    for name, ms, calls in rows[:top]:
        print(f"  {ms:9.2f} ms {100 * ms / total:5.1f} %  x{calls:<4d} {short_name(name)[:110]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("--card", default="gpt2.tiny")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lora", default="qv", choices=list(LORAS))
    parser.add_argument("--context", type=int, default=40, help="context tokens per row")
    parser.add_argument("--completion", type=int, default=24, help="completion tokens per row (with a loss)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest operators")
    args = parser.parse_args()
    config = get_card(args.card)
    batch = timing_batch(config, context=args.context, completion=args.completion)
    step = training_step(args.framework, config, batch, LORAS[args.lora])
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(1000.0 * (time.perf_counter() - start))
    print(f"{args.framework} {args.card} LoRA {args.lora} batch {batch.input.shape[0]}x{batch.input.shape[1]} "
          f"({int(batch.mask.sum())} loss positions): median {statistics.median(times):.1f} ms/step, "
          f"min {min(times):.1f}, max {max(times):.1f} over {args.steps} steps (warm-up {warmup_s:.1f} s)")
    if args.profile:
        print_profile(profile_rows(args.framework, step), args.profile)


if __name__ == "__main__":
    main()
