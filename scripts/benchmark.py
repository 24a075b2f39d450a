"""Speed of both trees side by side: training (dynamic vs fixed-512 padding) and beam search (batch 1 vs batched).

    .venv-torch/bin/python scripts/benchmark.py [--cards gpt2.tiny,gpt2.sm] [--frameworks pytorch,jittor]
                                               [--json trained_models/benchmark/benchmark.json]

Every measurement runs the real CLIs (gpt2_ft.py, gpt2_beam.py) of one tree in its own environment,
one subprocess at a time, on the prepared E2E sample (data/e2e/sampled_18pct):
- training: the paper's LoRA flags, `--log_interval 1`, the first --warmup steps dropped; ms/step and
  real (non-pad) tokens/s from log.jsonl, peak resident memory of the process (host RAM; on a GPU
  the device memory is not in it). Dynamic padding and `--fixed_padding` (every row padded to 512,
  as the reference) see the same batches, so their losses must agree ("at equal loss").
- sequence length (--lengths): the same training with every row exactly L tokens long (windows of the E2E
  training token stream, the last --length_loss_tokens of each with a loss, as a SQuAD answer after its
  paragraph): how each framework's step grows with length (attention is quadratic in it).
- beam search: the first --beam_inputs unique test inputs, beam 10 with the E2E settings, batch 1 vs
  --beam_batch; examples/s as gpt2_beam.py prints it; the two prediction files must be identical.
Jittor compiles its kernels on first use and caches them on disk, per operator graph and dtype, not per
input size (a new rank or a dimension of size 1 can still add kernels): a Jittor command that may meet
new kernels after its warm-up steps (dynamic padding; beam search, whose first step and last inputs have
size-1 dimensions) runs twice and the second (warm) run is compared; fixed padding meets all of its
kernels during the warm-up steps.
- fast paths (PyTorch, in one subprocess; `--fast_paths only` runs just this): ms of a gpt2.tiny LoRA training
  step on E2E batches and of decoding --fast_beam_inputs inputs, each fast path (SDPA attention, foreach
  AdamW, preallocated KV cache, and both) next to the written-out path it replaces, with the ratio; target: at
  most 5 % slower (which is why "auto" attention is the written-out path on CPU where SDPA is slower), beam
  predictions identical.
- processes (`--processes N`, 0 skips): gpt2.tiny LoRA training with the global batch --batch in 1 process and in
  N (torchrun / mpirun, --batch / N rows each): ms/step and the speed-up, and the largest per-step loss
  difference (the runs compute the same steps). A figure, not a target: on a 2-core CPU N processes share the
  cores that one process already uses; on N GPUs it is the scaling.
Targets (printed pass / miss): dynamic >= 3x the real tokens/s of fixed 512; Jittor ms/step <= 1.15x
PyTorch's; batched beam >= 5x the examples/s of batch 1, with identical outputs. Training ratios are
medians of per-step ratios (every run sees the same batches), robust to a step slowed by other load.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time

from lora_nlg.pipeline import presets
from lora_nlg.pipeline.frameworks import VENVS, framework_python, framework_script, launch_command
from lora_nlg.train.logs import read_log
from lora_nlg.util.errors import NLGError, run_cli
from lora_nlg.util.files import atomic_open
from lora_nlg.util.jsonl import read_jsonl, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXAMPLES_PER_S = re.compile(r"decoded (\d+) inputs in ([\d.]+)s: ([\d.]+) examples/s")
TARGETS = {"dynamic_speedup": 3.0, "jittor_over_torch": 1.15, "beam_speedup": 5.0}
LOSS_TOLERANCE = 1e-3  # |loss dynamic - loss fixed| per step: float summation order only


def run_measured(argv, cwd, log_path, what=None):
    """Run a command with its output in log_path; (wall seconds, peak RSS in MiB of the largest process waited
    for: the launcher's own with several processes). A failure names the log and `what` ran (default argv[1])."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise NLGError(f"{log_path}: {what or os.path.basename(argv[1])} failed (exit code {process.returncode})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


class Bench:
    def __init__(self, args, scratch):
        self.args, self.scratch = args, scratch
        self.data = os.path.join(ROOT, "data", "e2e", "sampled_18pct")
        for name in ("train.jsonl", "valid.jsonl", "test.jsonl"):
            if not os.path.isfile(os.path.join(self.data, name)):
                raise NLGError(f"{os.path.join(self.data, name)}: missing; run "
                               f"`python data/prepare.py --dataset e2e --source DIR` first")
        self.valid = os.path.join(scratch, "valid.jsonl")  # 4 rows: the end-of-run evaluation stays instant
        write_jsonl(self.valid, [item for _, item in read_jsonl(os.path.join(self.data, "valid.jsonl"))][:4])

    def command(self, framework, script, flags, name, many_shapes=True, nproc=1):
        """Run NLG_<framework>/src/<script> (in nproc processes); Jittor twice when it may meet kernels after its
        warm-up (the first run fills its kernel cache). Returns (wall seconds, peak RSS) of the measured run and
        of the cold run (or None)."""
        argv = launch_command(framework, framework_script(framework, script), nproc, flags)
        cwd = os.path.join(ROOT, f"NLG_{framework}")
        cold = None
        if framework == "jittor" and many_shapes:
            cold = run_measured(argv, cwd, os.path.join(self.scratch, f"{name}.cold.log"), script)
            print(f"  {name}: cold run {cold[0]:.1f}s (compiling)", flush=True)
        measured = run_measured(argv, cwd, os.path.join(self.scratch, f"{name}.log"), script)
        print(f"  {name}: {measured[0]:.1f}s, peak RSS {measured[1]:.0f} MiB", flush=True)
        return measured, cold

    def length_data(self, length):
        """A train file of rows exactly `length` tokens long (written once per length): consecutive windows of the
        E2E training rows' tokens laid end to end, a loss on the last --length_loss_tokens of each."""
        path = os.path.join(self.scratch, f"train_{length}.jsonl")
        if not os.path.isfile(path):
            stream = [t for _, row in read_jsonl(os.path.join(self.data, "train.jsonl"))
                      for t in row["context"] + row["completion"]]
            rows = (self.args.warmup + self.args.steps) * self.args.batch
            cut = length - self.args.length_loss_tokens
            write_jsonl(path, [{"context": stream[i * length:i * length + cut],
                                "completion": stream[i * length + cut:(i + 1) * length]} for i in range(rows)])
        return path

    def train(self, framework, card, fixed, nproc=1, length=None):
        """One training run; with nproc > 1 the global batch is the same, --batch / nproc rows in each process;
        `length`: on length_data(length) instead of the E2E sample (dynamic padding: every row that long)."""
        args = self.args
        large = card != "gpt2.tiny"
        batch = args.large_card_batch if large and args.large_card_batch else args.batch
        measured_steps = args.large_card_steps if large and args.large_card_steps else args.steps
        padding = f"{length} tokens" if length else "fixed 512" if fixed else "dynamic"
        name = f"train_{framework}_{card}_{padding.replace(' ', '_')}" + (f"_{nproc}proc" if nproc > 1 else "")
        work_dir = os.path.join(self.scratch, name)
        settings = {**presets.train_settings("e2e", "paper"), "model_card": card, "train_batch_size": batch // nproc,
                    "max_step": args.warmup + measured_steps, "log_interval": 1, "eval_interval": 10 ** 6,
                    "save_interval": 10 ** 6, "fixed_padding": fixed, "device": args.device}
        train_data = self.length_data(length) if length else os.path.join(self.data, "train.jsonl")
        flags = ["--train_data", train_data, "--valid_data", self.valid,
                 "--work_dir", work_dir, "--overwrite", *presets.as_flags(settings)]  # (Jittor runs twice in it)
        (wall, rss), cold = self.command(framework, "gpt2_ft.py", flags, name, many_shapes=not fixed, nproc=nproc)
        steps = [e for e in read_log(os.path.join(work_dir, "log.jsonl")) if e["type"] == "train"]
        measured = steps[args.warmup:]
        seconds = sum(e["ms_per_batch"] for e in measured) / 1000
        tokens = sum(e["tokens_per_s"] * e["ms_per_batch"] / 1000 for e in measured)
        return {"framework": framework, "card": card, "padding": padding,
                "batch": batch, "processes": nproc, "ms_per_step": 1000 * seconds / len(measured),
                "real_tokens_per_s": tokens / seconds,
                "padded_tokens_per_step": sum(e["padded_tokens_per_batch"] for e in measured) / len(measured),
                "step_ms": [e["ms_per_batch"] for e in measured], "losses": [e["loss"] for e in steps],
                "peak_rss_mib": rss, "wall_s": wall,
                "cold_wall_s": cold[0] if cold else None}

    def beam(self, framework, batch, test, base):
        name = f"beam_{framework}_batch{batch}"
        settings = {**presets.beam_settings("e2e", "paper"), "batch_size": batch, "device": self.args.device}
        flags = ["--data", test, *base, *presets.as_flags(settings), "--work_dir", self.scratch,
                 "--output_file", f"{name}.jsonl"]
        (wall, rss), cold = self.command(framework, "gpt2_beam.py", flags, name)
        with open(os.path.join(self.scratch, f"{name}.log"), encoding="utf-8") as f:
            match = EXAMPLES_PER_S.search(f.read())
        if not match:
            raise NLGError(f"{os.path.join(self.scratch, name)}.log: no 'examples/s' line from gpt2_beam.py")
        with open(os.path.join(self.scratch, f"{name}.jsonl"), encoding="utf-8") as f:
            predictions = f.read()
        return {"framework": framework, "batch": batch, "inputs": int(match.group(1)),
                "examples_per_s": float(match.group(3)), "peak_rss_mib": rss, "wall_s": wall,
                "cold_wall_s": cold[0] if cold else None}, predictions


def beam_inputs(data, count, scratch):
    """Encoded test rows of the first `count` unique inputs (each decoded once by gpt2_beam.py)."""
    rows = [item for _, item in read_jsonl(os.path.join(data, "test.jsonl"))]
    chosen = list(dict.fromkeys(tuple(row["context"]) for row in rows))[:count]
    path = os.path.join(scratch, "test.jsonl")
    write_jsonl(path, [{"context": list(c), "completion": [50256]} for c in chosen])
    return path


def base_flags(args):
    """The cpu demo base when it exists (a trained model: peaked scores, no near-ties), else a random gpt2.tiny."""
    base = os.path.join(ROOT, presets.CPU_BASE_DIR)
    if os.path.isfile(os.path.join(base, "model.safetensors")) and not args.random_base:
        return ["--init_checkpoint", base, "--model_card", "gpt2.tiny"], "cpu demo base"
    return ["--random_seed", "110", "--model_card", "gpt2.tiny"], "random gpt2.tiny (seed 110)"


def verdict(value, target, higher_is_better=True):
    ok = value >= target if higher_is_better else value <= target
    return f"{'pass' if ok else 'MISS'} (target {'>=' if higher_is_better else '<='} {target:g})"


def report(results):
    """Markdown tables with the ratios and targets; returns the text."""
    lines = ["## Training (E2E sample, LoRA r=4 on q,v; 'N tokens': every row N tokens long)", "",
             "| framework | card | batch | padding | ms/step | real tokens/s | padded tokens/step | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['framework']} | {r['card']} | {r['batch']} | {r['padding']} | {r['ms_per_step']:.1f} | "
              f"{r['real_tokens_per_s']:.0f} | {r['padded_tokens_per_step']:.0f} | {r['peak_rss_mib']:.0f} |"
              for r in results["train"]]
    lines += ["", "| check | value | verdict |", "|---|---|---|"]
    for check in results["checks"]:
        lines.append(f"| {check['check']} | {check['value']} | {check['verdict']} |")
    if results["beam"]:
        lines += ["", f"## Beam search ({results['beam_model']}, beam 10, E2E settings)", "",
                  "| framework | batch | inputs | examples/s | peak RSS MiB |", "|---|---|---|---|---|"]
        lines += [f"| {r['framework']} | {r['batch']} | {r['inputs']} | {r['examples_per_s']:.2f} | "
                  f"{r['peak_rss_mib']:.0f} |" for r in results["beam"]]
    return "\n".join(lines)


def median_ratio(numerators, denominators):
    """Median over steps of a / b: the runs see the same batches, so a step slowed down by another process
    on the machine shifts one ratio, not the result."""
    return float(statistics.median(a / b for a, b in zip(numerators, denominators)))


def checks(train, beam, identical):
    """The targets: one row per comparison (training ratios: medians of per-step ratios)."""
    rows = []
    by_key = {(r["framework"], r["card"], r["padding"]): r for r in train}
    for (framework, card, padding), run in by_key.items():
        fixed = by_key.get((framework, card, "fixed 512"))
        if padding == "dynamic" and fixed:
            ratio = median_ratio(fixed["step_ms"], run["step_ms"])  # same batches: same real tokens per step
            diff = max(abs(a - b) for a, b in zip(run["losses"], fixed["losses"]))
            rows.append({"check": f"{framework} {card}: dynamic / fixed-512 real tokens/s",
                         "value": f"{ratio:.2f}x (max |loss diff| {diff:.2g})",
                         "verdict": verdict(ratio, TARGETS["dynamic_speedup"])
                         + ("" if diff <= LOSS_TOLERANCE else " but losses DIFFER")})
        torch_run = by_key.get(("pytorch", card, padding))
        if framework == "jittor" and torch_run:
            ratio = median_ratio(run["step_ms"], torch_run["step_ms"])
            rows.append({"check": f"{card} {padding}: jittor / pytorch ms/step", "value": f"{ratio:.2f}x",
                         "verdict": verdict(ratio, TARGETS["jittor_over_torch"], higher_is_better=False)})
    for framework in dict.fromkeys(r["framework"] for r in beam):
        one, many = [r for r in beam if r["framework"] == framework]
        ratio = many["examples_per_s"] / one["examples_per_s"]
        rows.append({"check": f"{framework}: beam batch {many['batch']} / batch 1 examples/s",
                     "value": f"{ratio:.2f}x, outputs {'identical' if identical[framework] else 'DIFFERENT'}",
                     "verdict": verdict(ratio, TARGETS["beam_speedup"]) + ("" if identical[framework] else
                                                                           " but outputs differ")})
    if "cross" in identical:
        rows.append({"check": "beam outputs pytorch vs jittor", "value": "identical" if identical["cross"] else
                     "DIFFERENT", "verdict": "pass" if identical["cross"] else "MISS"})
    return rows


def process_rows(runs):
    """1 vs N processes per framework (same global batch, same steps): ms/step, speed-up, largest loss gap."""
    rows = []
    for framework in dict.fromkeys(r["framework"] for r in runs):
        one, many = [r for r in runs if r["framework"] == framework]
        rows.append({"framework": framework, "processes": many["processes"], "batch": one["batch"],
                     "ms_per_step_1": one["ms_per_step"], "ms_per_step_n": many["ms_per_step"],
                     "speedup": median_ratio(one["step_ms"], many["step_ms"]),
                     "max_loss_diff": max(abs(a - b) for a, b in zip(one["losses"], many["losses"]))})
    return rows


def process_report(rows):
    lines = ["## Several processes (gpt2.tiny LoRA, same global batch; a figure, not a target on CPU)", "",
             "| framework | global batch | 1 process ms/step | N processes | ms/step | speed-up | max loss diff |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['framework']} | {r['batch']} | {r['ms_per_step_1']:.1f} | {r['processes']} | "
              f"{r['ms_per_step_n']:.1f} | {r['speedup']:.2f}x | {r['max_loss_diff']:.2g} |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- fast paths vs written-out paths (PyTorch)

FAST_PATH_REGRESSION = 1.05  # fast ms / written-out ms: at most 5 % slower
# (label, GPT2LMModel attention, AdamW foreach) of the training step; (label, attention, beam_search cache)
TRAIN_PATHS = [("written-out", "reference", False), ("SDPA attention", "sdpa", False),
               ("foreach AdamW", "reference", True), ("SDPA + foreach", "sdpa", True)]
BEAM_PATHS = [("written-out", "reference", "concat"), ("preallocated KV cache", "reference", "preallocated"),
              ("SDPA attention", "sdpa", "concat"), ("SDPA + KV cache", "sdpa", "preallocated")]


def fast_path_train(args, data, device):
    """ms per LoRA training step (forward, masked loss, backward, AdamW) of each TRAIN_PATHS entry on the same
    E2E batches (the paper's flags, gpt2.tiny, dynamic padding), the paths interleaved step by step (the one
    that goes first rotating: on a loaded machine the order matters)."""
    import torch

    from lora import set_trainable
    from lora_nlg.data.batching import TrainBatches, load_encoded
    from lora_nlg.model.config import LoRAConfig, get_card
    from lora_nlg.model.init_weights import init_gpt2_weights, init_lora_weights
    from model import GPT2LMModel
    from optim import AdamW
    flags = presets.train_settings("e2e", "paper")
    config = get_card("gpt2.tiny")
    lora = LoRAConfig(r=flags["lora_dim"], alpha=flags["lora_alpha"], dropout=flags["lora_dropout"], targets="q,v")
    weights = {**init_gpt2_weights(config, 0), **init_lora_weights(config, lora, 0)}
    examples = load_encoded(os.path.join(data, "train.jsonl"), config.vocab_size)
    batches = TrainBatches(examples, args.batch, flags["seq_len"], flags["random_seed"]).epoch(0)
    runs = []
    for label, attention, foreach in TRAIN_PATHS:
        model = GPT2LMModel(config, lora, attention).to(device)
        model.load_weights(weights)
        set_trainable(model, lora)
        model.train()
        optimizer = AdamW([(n, p) for n, p in model.named_parameters() if p.requires_grad],
                          betas=(flags.get("adam_beta1", 0.9), flags["adam_beta2"]),
                          weight_decay=flags["weight_decay"], foreach=foreach)
        runs.append((label, model, optimizer, []))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    shapes = []
    for step, batch in zip(range(args.warmup + args.fast_steps), batches):
        inputs, target, mask = (torch.from_numpy(a).to(device) for a in (batch.input, batch.target, batch.mask))
        shapes.append(list(batch.input.shape))
        for label, model, optimizer, times in runs[step % len(runs):] + runs[:step % len(runs)]:
            torch.manual_seed(step)  # the same LoRA dropout masks in every path
            sync()
            start = time.perf_counter()
            loss, _ = model.loss(model(inputs)[0], target, mask, flags["label_smooth"])
            optimizer.backward(loss)
            optimizer.step(flags["lr"])
            optimizer.zero_grad()
            sync()
            if step >= args.warmup:
                times.append(1000 * (time.perf_counter() - start))
    return [{"path": label, "step_ms": times} for label, _, _, times in runs], shapes[args.warmup:]


def fast_path_beam(args, data, device, scratch):
    """Seconds to decode the first --fast_beam_inputs unique E2E test inputs (beam 10, E2E settings, batches of
    --beam_batch) for each BEAM_PATHS entry, the paths interleaved batch by batch (the first rotating); and
    their predictions."""
    import torch

    import gpt2_beam
    from lora_nlg.data.batching import load_encoded, query_batches, unique_contexts
    from lora_nlg.decode.beam_cli import beam_settings, parse_args
    from lora_nlg.decode.beam_model import load_decoding_model
    test = beam_inputs(data, args.fast_beam_inputs, scratch)
    base, description = base_flags(args)
    flags = {**presets.beam_settings("e2e", "paper"), "batch_size": args.beam_batch}
    beam_args = parse_args(["--data", test, *base, *presets.as_flags(flags)], framework="pytorch")
    settings = beam_settings(beam_args)
    decoding = load_decoding_model(beam_args, settings)
    models = {attention: gpt2_beam.build_model(decoding, device, attention) for attention in ("reference", "sdpa")}
    contexts, _ = unique_contexts(load_encoded(test, decoding.config.vocab_size))
    runs = [(label, attention, cache, [], []) for label, attention, cache in BEAM_PATHS]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for number, batch in enumerate(query_batches(contexts, beam_args.batch_size, beam_args.seq_len,
                                                 settings.eval_len)):
        for _, attention, cache, seconds, predictions in runs[number % len(runs):] + runs[:number % len(runs)]:
            sync()
            start = time.perf_counter()
            predictions.append(gpt2_beam.beam_search(models[attention], batch, settings, cache=cache))
            sync()
            seconds.append(time.perf_counter() - start)
    return [{"path": label, "batch_s": seconds, "predictions": [p for batch in predictions for p in batch]}
            for label, _, _, seconds, predictions in runs], description, len(contexts)


def fast_paths_worker(args):
    """The fast-path section, in the PyTorch environment (main runs it as a subprocess): writes --worker's json."""
    import torch

    from model import pick_device
    device = pick_device(args.device)
    if args.fast_threads:
        torch.set_num_threads(args.fast_threads)
    scratch = tempfile.mkdtemp(prefix="lora_nlg_fast_paths_")
    data = os.path.join(ROOT, "data", "e2e", "sampled_18pct")
    train, shapes = fast_path_train(args, data, device)
    beam, beam_model, inputs = fast_path_beam(args, data, device, scratch)
    shutil.rmtree(scratch)
    with atomic_open(args.worker) as f:
        f.write(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "train": train,
                            "train_shapes": shapes, "beam": beam, "beam_model": beam_model,
                            "beam_batch": args.beam_batch, "beam_inputs": inputs}) + "\n")


def fast_path_rows(section):
    """One row per fast path: its ms and the written-out path's (medians per step in training, totals in beam
    search), the ratio (median of per-step / per-batch ratios: robust to a step slowed by other load) and the
    verdict (no slower than FAST_PATH_REGRESSION)."""
    rows = []
    reference = section["train"][0]
    for run in section["train"][1:]:
        ratio = median_ratio(run["step_ms"], reference["step_ms"])
        rows.append({"what": "training step", "path": run["path"], "fast_ms": statistics.median(run["step_ms"]),
                     "written_out_ms": statistics.median(reference["step_ms"]), "ratio": ratio,
                     "verdict": verdict(ratio, FAST_PATH_REGRESSION, higher_is_better=False)})
    reference = section["beam"][0]
    for run in section["beam"][1:]:
        ratio = median_ratio(run["batch_s"], reference["batch_s"])
        same = run["predictions"] == reference["predictions"]
        rows.append({"what": f"beam search, {section['beam_inputs']} inputs", "path": run["path"],
                     "fast_ms": 1000 * sum(run["batch_s"]), "written_out_ms": 1000 * sum(reference["batch_s"]),
                     "ratio": ratio, "verdict": verdict(ratio, FAST_PATH_REGRESSION, higher_is_better=False)
                     + (", predictions identical" if same else ", predictions DIFFER")})
    return rows


def fast_path_report(section):
    shapes = section["train_shapes"]
    lines = [f"## Fast paths vs written-out paths (PyTorch, {section['device']}, {section['threads']} threads)", "",
             f"Training: gpt2.tiny, LoRA r=4 on q,v, E2E batches {shapes[0][0]} x "
             f"{min(s[1] for s in shapes)}-{max(s[1] for s in shapes)} tokens, median ms/step over {len(shapes)} "
             f"steps. Beam search: {section['beam_model']}, beam 10, E2E settings, batches of {section['beam_batch']}, "
             "total ms. Ratio = fast / written-out (< 1: faster): median of per-step / per-batch ratios.", "",
             "| what | fast path | fast ms | written-out ms | ratio | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['path']} | {r['fast_ms']:.1f} | {r['written_out_ms']:.1f} | {r['ratio']:.3f} | "
              f"{r['verdict']} |" for r in fast_path_rows(section)]
    return "\n".join(lines)


def run_fast_paths(args, scratch):
    """Run the section in the PyTorch environment; returns its measurements."""
    out = os.path.join(scratch, "fast_paths.json")
    argv = [framework_python("pytorch"), os.path.abspath(__file__), "--worker", out, "--device", args.device,
            "--batch", str(args.batch), "--warmup", str(args.warmup), "--fast_steps", str(args.fast_steps),
            "--fast_beam_inputs", str(args.fast_beam_inputs), "--beam_batch", str(args.beam_batch),
            "--fast_threads", str(args.fast_threads)]
    argv += ["--random_base"] if args.random_base else []
    wall, _ = run_measured(argv, ROOT, os.path.join(scratch, "fast_paths.log"))
    print(f"  fast paths: {wall:.1f}s", flush=True)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = shutil.which("nvidia-smi") is not None
    parser.add_argument("--frameworks", default="pytorch,jittor")
    parser.add_argument("--cards", default="gpt2.tiny,gpt2.sm,gpt2.md" if gpu else "gpt2.tiny,gpt2.sm")
    parser.add_argument("--batch", type=int, default=8, help="training batch (the paper's 8)")
    parser.add_argument("--large_card_batch", type=int, default=None if gpu else 2,
                        help="training batch of the cards beyond gpt2.tiny (CPU default 2: a fixed-512 step of "
                             "gpt2.sm at batch 8 takes minutes here)")
    parser.add_argument("--large_card_steps", type=int, default=None if gpu else 2,
                        help="measured steps of the cards beyond gpt2.tiny (CPU default 2, to stay within ~10 min)")
    parser.add_argument("--steps", type=int, default=4, help="measured training steps")
    parser.add_argument("--lengths", default="186,384", help="sequence lengths of the length section (SQuAD's typical "
                                                             "186, and 384); empty: skip")
    parser.add_argument("--length_loss_tokens", type=int, default=32, help="tokens with a loss per row there")
    parser.add_argument("--warmup", type=int, default=1, help="training steps run before measuring")
    parser.add_argument("--beam_inputs", type=int, default=12, help="unique E2E test inputs decoded")
    parser.add_argument("--beam_batch", type=int, default=12, help="batch of the batched beam run")
    parser.add_argument("--random_base", action="store_true", help="beam with a random gpt2.tiny even if the "
                                                                   "cpu demo base exists")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=os.path.join(ROOT, "trained_models", "benchmark", "benchmark.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs of every run)")
    parser.add_argument("--fast_paths", default="with", choices=["with", "only", "skip"],
                        help="the PyTorch fast paths vs the written-out ones (SDPA, foreach AdamW, KV cache): with "
                             "the rest, only them, or not")
    parser.add_argument("--fast_steps", type=int, default=10, help="measured training steps of each fast path")
    parser.add_argument("--fast_beam_inputs", type=int, default=50, help="unique E2E test inputs each beam path "
                                                                          "decodes")
    parser.add_argument("--fast_threads", type=int, default=0, help="torch threads of the fast-path section "
                                                                    "(0: torch's default)")
    parser.add_argument("--processes", type=int, default=2, help="compare gpt2.tiny training in 1 and in N processes "
                                                                  "(torchrun / mpirun); 0: skip")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # run_fast_paths' subprocess: its json
    args = parser.parse_args(argv)
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    args.cards = [c for c in args.cards.split(",") if c]
    args.lengths = [int(n) for n in args.lengths.split(",") if n]
    if any(not args.length_loss_tokens < n <= 512 for n in args.lengths) or args.length_loss_tokens < 1:
        parser.error("--lengths must lie in (--length_loss_tokens, 512], --length_loss_tokens >= 1")
    for framework in args.frameworks:
        if framework not in VENVS:
            parser.error(f"--frameworks: unknown framework {framework!r}")
    if args.processes < 0 or args.processes == 1 or args.batch % max(args.processes, 1):
        parser.error("--processes must be 0 (skip) or >= 2, dividing --batch")
    if args.steps < 1 or args.warmup < 0 or args.beam_inputs < 1 or args.fast_steps < 1 or args.fast_beam_inputs < 1:
        parser.error("--steps, --beam_inputs, --fast_steps and --fast_beam_inputs must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return fast_paths_worker(args)
    scratch = tempfile.mkdtemp(prefix="lora_nlg_bench_")
    started = time.perf_counter()
    bench = Bench(args, scratch)
    fast = run_fast_paths(args, scratch) if args.fast_paths != "skip" else None
    if args.fast_paths == "only":
        return finish(args, scratch, {"machine": machine(args), "fast_paths": fast,
                                      "fast_path_checks": fast_path_rows(fast),
                                      "seconds": time.perf_counter() - started}, fast_path_report(fast))
    train, beam, identical, outputs = [], [], {}, {}
    for card in args.cards:
        for framework in args.frameworks:
            for fixed in (False, True):
                train.append(bench.train(framework, card, fixed))
            for length in args.lengths:
                train.append(bench.train(framework, card, False, length=length))
    base, model = base_flags(args)
    test = beam_inputs(bench.data, args.beam_inputs, scratch)
    for framework in args.frameworks:
        runs = [bench.beam(framework, batch, test, base) for batch in (1, args.beam_batch)]
        beam += [result for result, _ in runs]
        identical[framework] = runs[0][1] == runs[1][1]
        outputs[framework] = runs[1][1]
    if len(outputs) == 2:
        identical["cross"] = outputs["pytorch"] == outputs["jittor"]
    results = {"machine": machine(args),
               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "keep", "worker")},
               "train": train, "beam": beam, "beam_model": model, "beam_outputs_identical": identical,
               "seconds": time.perf_counter() - started}
    results["checks"] = checks(train, beam, identical)
    text = report(results)
    if args.processes:
        runs = [bench.train(framework, "gpt2.tiny", False, nproc) for framework in args.frameworks
                for nproc in (1, args.processes)]
        results["processes"] = process_rows(runs)
        text += "\n\n" + process_report(results["processes"])
    if fast:
        results["fast_paths"], results["fast_path_checks"] = fast, fast_path_rows(fast)
        text += "\n\n" + fast_path_report(fast)
    finish(args, scratch, results, text)


def machine(args):
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device}


def finish(args, scratch, results, text):
    """Print the report, write the json, remove the scratch folder (unless --keep)."""
    print(text)
    with atomic_open(args.json) as f:
        f.write(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json} ({results['seconds']:.0f} s); run logs in "
          f"{scratch if args.keep else 'a scratch folder, removed (--keep keeps it)'}")
    if not args.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    run_cli(main)
