"""Speed of both trees side by side: training (dynamic vs fixed-512 padding) and beam search (batch 1 vs batched).

    .venv-torch/bin/python scripts/benchmark.py [--cards gpt2.tiny,gpt2.sm] [--frameworks pytorch,jittor]
                                               [--json trained_models/benchmark/benchmark.json]

Every measurement runs the real CLIs (gpt2_ft.py, gpt2_beam.py) of one tree in its own environment,
one subprocess at a time, on the prepared E2E sample (data/e2e/sampled_18pct):
- training: the paper's LoRA flags, `--log_interval 1`, the first --warmup steps dropped; ms/step and
  real (non-pad) tokens/s from log.jsonl, peak resident memory of the process (host RAM; on a GPU
  the device memory is not in it). Dynamic padding and `--fixed_padding` (every row padded to 512,
  as the reference) see the same batches, so their losses must agree ("at equal loss").
- beam search: the first --beam_inputs unique test inputs, beam 10 with the E2E settings, batch 1 vs
  --beam_batch; examples/s as gpt2_beam.py prints it; the two prediction files must be identical.
Jittor compiles its kernels on first use and caches them on disk, per operator graph and dtype, not per
input size (a new rank or a dimension of size 1 can still add kernels): a Jittor command that may meet
new kernels after its warm-up steps (dynamic padding; beam search, whose first step and last inputs have
size-1 dimensions) runs twice and the second (warm) run is compared; fixed padding meets all of its
kernels during the warm-up steps.
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
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lora_nlg.pipeline import presets  # noqa: E402
from lora_nlg.pipeline.frameworks import VENVS, framework_python  # noqa: E402
from lora_nlg.train.logs import read_log  # noqa: E402
from lora_nlg.util.errors import NLGError, run_cli  # noqa: E402
from lora_nlg.util.files import atomic_open  # noqa: E402
from lora_nlg.util.jsonl import read_jsonl, write_jsonl  # noqa: E402

EXAMPLES_PER_S = re.compile(r"decoded (\d+) inputs in ([\d.]+)s: ([\d.]+) examples/s")
TARGETS = {"dynamic_speedup": 3.0, "jittor_over_torch": 1.15, "beam_speedup": 5.0}
LOSS_TOLERANCE = 1e-3  # |loss dynamic - loss fixed| per step: float summation order only


def run_measured(argv, cwd, log_path):
    """Run a command with its output in log_path; (wall seconds, peak RSS in MiB). A failure names the log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise NLGError(f"{log_path}: {os.path.basename(argv[1])} failed (exit code {process.returncode})")
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

    def command(self, framework, script, flags, name, many_shapes=True):
        """Run NLG_<framework>/src/<script>; Jittor twice when it may meet kernels after its warm-up (the first
        run fills its kernel cache). Returns (wall seconds, peak RSS) of the measured run and of the cold run
        (or None)."""
        argv = [framework_python(framework), os.path.join("src", script), *flags]
        cwd = os.path.join(ROOT, f"NLG_{framework}")
        cold = None
        if framework == "jittor" and many_shapes:
            cold = run_measured(argv, cwd, os.path.join(self.scratch, f"{name}.cold.log"))
            print(f"  {name}: cold run {cold[0]:.1f}s (compiling)", flush=True)
        measured = run_measured(argv, cwd, os.path.join(self.scratch, f"{name}.log"))
        print(f"  {name}: {measured[0]:.1f}s, peak RSS {measured[1]:.0f} MiB", flush=True)
        return measured, cold

    def train(self, framework, card, fixed):
        args = self.args
        large = card != "gpt2.tiny"
        batch = args.large_card_batch if large and args.large_card_batch else args.batch
        measured_steps = args.large_card_steps if large and args.large_card_steps else args.steps
        name = f"train_{framework}_{card}_{'fixed' if fixed else 'dynamic'}"
        work_dir = os.path.join(self.scratch, name)
        settings = {**presets.train_settings("e2e", "paper"), "model_card": card, "train_batch_size": batch,
                    "max_step": args.warmup + measured_steps, "log_interval": 1, "eval_interval": 10 ** 6,
                    "save_interval": 10 ** 6, "fixed_padding": fixed, "device": args.device}
        flags = ["--train_data", os.path.join(self.data, "train.jsonl"), "--valid_data", self.valid,
                 "--work_dir", work_dir, *presets.as_flags(settings)]
        (wall, rss), cold = self.command(framework, "gpt2_ft.py", flags, name, many_shapes=not fixed)
        steps = [e for e in read_log(os.path.join(work_dir, "log.jsonl")) if e["type"] == "train"]
        measured = steps[args.warmup:]
        seconds = sum(e["ms_per_batch"] for e in measured) / 1000
        tokens = sum(e["tokens_per_s"] * e["ms_per_batch"] / 1000 for e in measured)
        return {"framework": framework, "card": card, "padding": "fixed 512" if fixed else "dynamic",
                "batch": batch, "ms_per_step": 1000 * seconds / len(measured), "real_tokens_per_s": tokens / seconds,
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
    lines = ["## Training (E2E sample, LoRA r=4 on q,v)", "",
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
    if len(identical) == 2:
        rows.append({"check": "beam outputs pytorch vs jittor", "value": "identical" if identical["cross"] else
                     "DIFFERENT", "verdict": "pass" if identical["cross"] else "MISS"})
    return rows


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
    parser.add_argument("--warmup", type=int, default=1, help="training steps run before measuring")
    parser.add_argument("--beam_inputs", type=int, default=12, help="unique E2E test inputs decoded")
    parser.add_argument("--beam_batch", type=int, default=12, help="batch of the batched beam run")
    parser.add_argument("--random_base", action="store_true", help="beam with a random gpt2.tiny even if the "
                                                                   "cpu demo base exists")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=os.path.join(ROOT, "trained_models", "benchmark", "benchmark.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs of every run)")
    args = parser.parse_args(argv)
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    args.cards = [c for c in args.cards.split(",") if c]
    for framework in args.frameworks:
        if framework not in VENVS:
            parser.error(f"--frameworks: unknown framework {framework!r}")
    if args.steps < 1 or args.warmup < 0 or args.beam_inputs < 1:
        parser.error("--steps and --beam_inputs must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="lora_nlg_bench_")
    started = time.perf_counter()
    bench = Bench(args, scratch)
    train, beam, identical, outputs = [], [], {}, {}
    for card in args.cards:
        for framework in args.frameworks:
            for fixed in (False, True):
                train.append(bench.train(framework, card, fixed))
    base, model = base_flags(args)
    test = beam_inputs(bench.data, args.beam_inputs, scratch)
    for framework in args.frameworks:
        runs = [bench.beam(framework, batch, test, base) for batch in (1, args.beam_batch)]
        beam += [result for result, _ in runs]
        identical[framework] = runs[0][1] == runs[1][1]
        outputs[framework] = runs[1][1]
    if len(outputs) == 2:
        identical["cross"] = outputs["pytorch"] == outputs["jittor"]
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device},
               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "keep")},
               "train": train, "beam": beam, "beam_model": model, "beam_outputs_identical": identical,
               "seconds": time.perf_counter() - started}
    results["checks"] = checks(train, beam, identical)
    text = report(results)
    print(text)
    with atomic_open(args.json) as f:
        f.write(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json} ({results['seconds']:.0f} s); run logs in "
          f"{scratch if args.keep else 'a scratch folder, removed (--keep keeps it)'}")
    if not args.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    run_cli(main)
