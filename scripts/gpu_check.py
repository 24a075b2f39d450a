"""The prepared device check: GPU numbers for the README, measured by the project's own CLIs (gpt2_ft.py, gpt2_beam.py).

    bash scripts/gpu_check.sh --data data/e2e/gpu_check [--out DIR] [--python python3]     # on the GPU machine
    bash scripts/gpu_check.sh --smoke --out /tmp/x --python .venv-torch/bin/python          # CPU, in the tests

Runs offline in well under 8 minutes on one H100/H200-class GPU. --data: a folder with the encoded E2E
train.jsonl and test.jsonl (data/prepare.py --dataset e2e; scripts/gpu_data.sh makes it). Writes into --out
(default $OUT if set, else gpu_check_out/): results.json, results.md (the tables) and logs/ (every run's output).

Training (PyTorch, GPT-2 M shape = card gpt2.md, random init, the paper's E2E flags, batch 8): each configuration
is one `gpt2_ft.py` run of --warmup + --steps steps with `--log_interval 1`; ms/step and real (non-pad) tokens/s
are read from its log.jsonl, the warm-up steps dropped; peak GPU memory is torch.cuda.max_memory_allocated of the
run's process. Configurations: LoRA r=4 on q,v in TF32 (the default on CUDA), in float32 (--exact), in bfloat16
autocast (--bf16); LoRA with every row padded to 512 (--fixed_padding, the reference's cost on the same GPU); full
fine-tuning (--lora_dim 0).
MFU = model FLOPs per step / (seconds per step * the GPU's dense peak for the arithmetic used: bf16 tensor cores under
--bf16, TF32 tensor cores by default, plain fp32 under --exact); PEAK_TFLOPS below, from NVIDIA's datasheets.
Model FLOPs of a step (FLOPS_FORMULA), counted on each row's real length (the padding computes nothing useful;
"executed" counts the padded width instead):
    forward  F = 2 * N_block * T + 2 * N_lora * T + 2 * d * V * P + sum over rows of 4 * n_layer * d * n_row^2
    backward = activation gradients of every matmul (2 N_block T + 2 d V P + 2 N_lora T, once more)
             + attention's backward (2x its forward) + weight gradients of the trainable matrices only
               (LoRA: 2 N_lora T; full fine-tuning: also 2 N_block T + 2 d V P, the tied LM head)
  N_block: weights of the transformer blocks' matmuls, N_lora: LoRA weights, T: real tokens, P: loss positions
  (the LM head runs on the completion positions only), d: width, V: vocabulary, attention as a full square
  (PaLM's 6N + 12 n_layer d n convention); embeddings, layer norms, softmax and AdamW are left out (< 1 %).
  So LoRA's step ~ 4 N T + ..., full fine-tuning's ~ 6 N T + ....
Beam search (PyTorch, GPT-2 M shape, the E2E test inputs (114 unique in the 18 % sample), beam 10 and the paper's
E2E settings): gpt2_beam.py at batch 1 and batch 16, examples/s as it prints them; the two prediction files must be
identical. Both run in float32 (--exact): TF32 rounding depends on the batch shape and could flip a near-tie. The
random base has its (tied) embedding scaled by BEAM_WTE_SCALE, so next-token scores are peaked as a trained model's
(the chosen tokens' log-probabilities near 0, not near -log V, which keeps the summed beam scores precise). A random
model has no reason to stop (it would repeat the prompt's last token, EOS), so EOS is banned before eval_len tokens
(--min_length 64): every input generates exactly 64 tokens, the longest an E2E output may be (a trained model's
average ~25), at batch 1 and batch 16 alike; examples/s is thus a lower bound for a trained model.
Jittor: the same runs (no bf16: the Jittor tree refuses it) when lora_nlg.util.jittor_setup finds a CUDA 11.x-12.x
toolkit and the Jittor python has jittor; otherwise one line says why it was skipped.
"""
import argparse
import datetime
import itertools
import json
import os
import platform
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from lora_nlg.data.batching import TrainBatches, load_encoded, unique_contexts
from lora_nlg.model.config import LoRAConfig, get_card, lora_shapes, param_shapes
from lora_nlg.pipeline import presets
from lora_nlg.train.logs import read_log
from lora_nlg.util import jittor_setup
from lora_nlg.util.jsonl import read_jsonl, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Dense (no sparsity) peak TFLOP/s per GPU, from NVIDIA's datasheets (H100: nvidia.com/en-us/data-center/h100,
# H200: nvidia.com/en-us/data-center/h200, A100: nvidia.com/en-us/data-center/a100; they print tensor-core figures
# "with sparsity", i.e. twice these). First match of the name wins (NVL / PCIe before the SXM default).
PEAK_SOURCE = "NVIDIA H100 / H200 / A100 datasheets, dense (the sparsity figures halved)"
PEAK_TFLOPS = [
    ("H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5}),
    ("H200", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5}),  # H200 SXM (also GH200)
    ("H100", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5}),  # H100 SXM
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
]
FLOPS_FORMULA = ("per step: forward 2*N_block*T + 2*N_lora*T + 2*d*V*P + sum_rows 4*n_layer*d*n^2; backward: "
                 "activation grads 2*N_block*T + 2*d*V*P + 2*N_lora*T, attention 2x its forward, weight grads of "
                 "trainable matrices only (LoRA 2*N_lora*T; full FT also 2*N_block*T + 2*d*V*P); T real tokens, "
                 "P loss positions, n row lengths (executed: padded width); MFU = model FLOPs / (s/step * peak)")
BEAM_WTE_SCALE = 8.0
TRAIN_CONFIGS = [  # (name, gpt2_ft.py flags, frameworks)
    ("lora_tf32", [], ("pytorch", "jittor")),
    ("lora_fp32", ["--exact"], ("pytorch", "jittor")),
    ("lora_bf16", ["--bf16"], ("pytorch",)),
    ("lora_tf32_fixed512", ["--fixed_padding"], ("pytorch", "jittor")),
    ("full_ft_tf32", ["--lora_dim", "0"], ("pytorch", "jittor")),
]
TREES = {"pytorch": "NLG_pytorch", "jittor": "NLG_jittor"}
EXAMPLES_PER_S = re.compile(r"decoded (\d+) inputs in ([\d.]+)s: ([\d.]+) examples/s")
RESULT_KEYS = ("mode", "started", "wall_s", "ok", "environment", "settings", "peak_tflops", "flops_formula",
               "train", "beam", "jittor", "checks")


class CheckError(Exception):
    """A run that failed; its message names the log."""


# ------------------------------------------------------------------ FLOPs

def block_matmul_weights(config):
    """Weights of the transformer blocks' matmuls (c_attn, c_proj, c_fc, mlp c_proj), i.e. N_block."""
    return sum(int(np.prod(s)) for n, s in param_shapes(config).items() if n.startswith("h.") and len(s) == 2)


def lora_weights(config, lora):
    return sum(int(np.prod(s)) for s in lora_shapes(config, lora).values())


def step_flops(config, lora, lengths, loss_positions, width=None):
    """FLOPs of one training step (FLOPS_FORMULA) on rows of `lengths` real tokens; with `width`, as executed
    (every row as long as the padded width)."""
    rows = [int(width)] * len(lengths) if width else [int(n) for n in lengths]
    tokens = sum(rows)
    d, layers, vocab = config.n_embd, config.n_layer, config.vocab_size
    dense = 2 * block_matmul_weights(config) * tokens + 2 * d * vocab * loss_positions
    low_rank = 2 * lora_weights(config, lora) * tokens
    attention = sum(4 * layers * d * n * n for n in rows)
    full = lora.r == 0
    forward = dense + low_rank + attention
    backward = dense * (2 if full else 1) + 2 * low_rank + 2 * attention
    return forward + backward


def run_batches(train_path, config, batch_size, seq_len, seed, fixed, steps):
    """The batches gpt2_ft.py trains on in its first `steps` steps (lora_nlg.data.batching.TrainBatches, epochs
    from 1): [(row lengths, loss positions, width)]."""
    batches = TrainBatches(load_encoded(train_path, config.vocab_size), batch_size, seq_len, seed, fixed_length=fixed)
    out = []
    for epoch in itertools.count(1):
        for batch in batches.epoch(epoch):
            out.append((batch.lengths.tolist(), int((batch.mask > 0).sum()), batch.input.shape[1]))
            if len(out) == steps:
                return out


def peak_for(gpu_name, precision):
    """(TFLOP/s, table key) of `gpu_name` for "bf16" / "tf32" / "fp32"; (None, None) for a GPU not in the table."""
    for key, peaks in PEAK_TFLOPS:
        if gpu_name and key.lower() in gpu_name.lower():
            return peaks[precision], key
    return None, None


def arithmetic(start_event):
    """bf16 / tf32 / fp32 from the precision a gpt2_ft.py log's start event reports."""
    precision = start_event.get("precision", {})
    if precision.get("autocast") == "bfloat16":
        return "bf16"
    if precision.get("autocast") == "float16":
        return "fp16"
    return "tf32" if precision.get("matmul") == "tf32" else "fp32"


# ------------------------------------------------------------------ processes

class MemorySampler:
    """Largest GPU memory in use (nvidia-smi, MiB, whole GPU) while a run lasts; None without nvidia-smi."""

    def __init__(self):
        self.peak, self.stop = None, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True) if shutil.which("nvidia-smi") else None

    def poll(self):
        while not self.stop.is_set():
            try:
                text = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=10).stdout
                used = max(float(v) for v in text.split())
                self.peak = used if self.peak is None else max(self.peak, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self.stop.wait(0.25)

    def __enter__(self):
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread:
            self.thread.join()


def run_cli(python, framework, script, flags, log_path, stats_path, threads=None, timeout=None):
    """One CLI of a tree (its own __main__, run in a child process by `cli_child`), output into log_path; `threads`:
    its CPU threads (--smoke: 1, for the shared CPUs of a test run); `timeout`: seconds before it is killed.
    Returns (wall seconds, {"peak_allocated_mib", "peak_reserved_mib"} or {}, nvidia-smi peak MiB)."""
    argv = [python, os.path.abspath(__file__), "_cli", framework, script, stats_path, "--", *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, TREES[framework], "src"),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}  # no install needed
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log, MemorySampler() as sampler:
        try:
            code = subprocess.run(argv, cwd=os.path.join(ROOT, TREES[framework]), env=env, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise CheckError(f"{os.path.basename(log_path)}: {script} killed after {timeout:.0f}s "
                             f"(the check's deadline)") from None
    wall = time.perf_counter() - start
    if code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            tail = f.read().strip().splitlines()[-1:] or ["(no output)"]
        raise CheckError(f"{os.path.basename(log_path)}: {script} exited with {code}: {tail[0][:300]}")
    stats = {}
    if os.path.isfile(stats_path):
        with open(stats_path, encoding="utf-8") as f:
            stats = json.load(f)
    return wall, stats, sampler.peak


def cli_child(framework, script, stats_path, flags):
    """In the child: run NLG_<framework>/src/<script> as __main__ (the real CLI, as `python src/<script>` runs it),
    then write the process's peak CUDA memory (PyTorch) into stats_path."""
    sys.argv = [os.path.join(ROOT, TREES[framework], "src", script), *flags]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        torch = sys.modules.get("torch")
        stats = {}
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            stats = {"peak_allocated_mib": torch.cuda.max_memory_allocated() / 2 ** 20,
                     "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2 ** 20}
        with open(stats_path, "w", encoding="utf-8") as f:
            json.dump(stats, f)


def python_json(python, code):
    """json printed by `code` run with `python` (the environment report); {"error": ...} when it fails."""
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


TORCH_REPORT = """
import json, torch
info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=torch.cuda.get_device_name(0), capability="%d.%d" % (p.major, p.minor),
                gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), sm_count=p.multi_processor_count,
                bf16_supported=torch.cuda.is_bf16_supported())
print(json.dumps(info))
"""


def environment(args):
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "torch_python": args.python, **python_json(args.python, TORCH_REPORT)}
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=60).stdout.strip().splitlines()
        if query:
            name, driver, memory = [part.strip() for part in query[0].split(",")][:3]
            env.update(nvidia_smi_gpu=name, driver=driver, nvidia_smi_memory=memory, gpu_count=len(query))
    env["device"] = args.device
    return env


# ------------------------------------------------------------------ measurements

class Check:
    def __init__(self, args):
        self.args = args
        self.scratch = tempfile.mkdtemp(prefix="gpu_check_")
        self.logs = os.path.join(args.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.start = time.perf_counter()
        self.threads = 1 if args.smoke else None
        self.data = args.data or self.smoke_data()
        for name in ("train.jsonl", "test.jsonl"):
            if not os.path.isfile(os.path.join(self.data, name)):
                shutil.rmtree(self.scratch, ignore_errors=True)
                raise SystemExit(f"error: {os.path.join(self.data, name)}: missing; make it with "
                                 f"`bash scripts/gpu_data.sh` (data/prepare.py --dataset e2e)")
        self.valid = os.path.join(self.scratch, "valid.jsonl")  # 4 rows: the end-of-run evaluation stays instant
        source = os.path.join(self.data, "valid.jsonl")
        rows = [item for _, item in read_jsonl(source if os.path.isfile(source) else
                                               os.path.join(self.data, "train.jsonl"))][:4]
        write_jsonl(self.valid, rows)
        self.config = get_card(args.card)

    def elapsed(self):
        return time.perf_counter() - self.start

    def over_budget(self):
        return self.elapsed() > self.args.budget_s

    def time_left(self):
        """Seconds a run may still take: until --deadline_s (a run still going then is killed)."""
        return max(1.0, self.args.deadline_s - self.elapsed())

    def smoke_data(self):
        """Tiny random encoded E2E-like data: 64 training rows, 6 test inputs (each twice)."""
        folder = os.path.join(self.scratch, "smoke_data")
        os.makedirs(folder)
        rng = np.random.default_rng(0)

        def row():
            return {"context": rng.integers(1, 50000, int(rng.integers(20, 60))).tolist(),
                    "completion": rng.integers(1, 50000, int(rng.integers(5, 20))).tolist() + [50256]}
        write_jsonl(os.path.join(folder, "train.jsonl"), [row() for _ in range(64)])
        tests = [row() for _ in range(6)]
        write_jsonl(os.path.join(folder, "test.jsonl"), tests + tests)
        return folder

    def save_logs(self, name, work_dir):
        for file in ("log.jsonl", "log.txt"):
            if os.path.isfile(os.path.join(work_dir, file)):
                shutil.copy(os.path.join(work_dir, file), os.path.join(self.logs, f"{name}.{file}"))

    # ---- training

    def train(self, framework, python, name, extra, gpu_name):
        args = self.args
        label = f"{framework}_{name}"
        work_dir = os.path.join(self.scratch, label)
        settings = {**presets.train_settings("e2e", "paper"), "model_card": args.card,
                    "train_batch_size": args.batch, "seq_len": args.seq_len, "max_step": args.warmup + args.steps,
                    "log_interval": 1,
                    "eval_interval": 10 ** 6, "save_interval": 10 ** 6, "device": args.device}
        flags = ["--train_data", os.path.join(self.data, "train.jsonl"), "--valid_data", self.valid,
                 "--work_dir", work_dir, *presets.as_flags(settings), *extra]
        runs = 2 if framework == "jittor" and "--fixed_padding" not in extra else 1  # Jittor: a cold run compiles
        for attempt in range(runs):
            shutil.rmtree(work_dir, ignore_errors=True)
            suffix = ".cold" if attempt < runs - 1 else ""
            wall, stats, smi_peak = run_cli(python, framework, "gpt2_ft.py", flags,
                                            os.path.join(self.logs, f"{label}{suffix}.out.txt"),
                                            os.path.join(self.scratch, f"{label}.stats.json"), self.threads,
                                            self.time_left())
        self.save_logs(label, work_dir)
        events = read_log(os.path.join(work_dir, "log.jsonl"))
        shutil.rmtree(work_dir, ignore_errors=True)  # full fine-tuning saves GBs of state
        start = next(e for e in events if e["type"] == "start")
        steps = [e for e in events if e["type"] == "train"]
        measured = steps[args.warmup:]
        seconds = sum(e["ms_per_batch"] for e in measured) / 1000
        real_tokens = sum(e["real_tokens_per_batch"] for e in measured)
        lora_dim = int(start["args"]["lora_dim"])
        lora = LoRAConfig(r=lora_dim, alpha=start["args"]["lora_alpha"], dropout=start["args"]["lora_dropout"],
                          targets=start["args"]["lora_targets"])
        batches = run_batches(os.path.join(self.data, "train.jsonl"), self.config, args.batch,
                              settings["seq_len"], settings["random_seed"], "--fixed_padding" in extra, len(steps))
        # the reconstructed batches must be the ones trained on: their real tokens match the log step by step
        same_batches = [sum(b[0]) for b in batches] == [round(e["real_tokens_per_batch"]) for e in steps]
        precision = arithmetic(start)
        result = {"name": name, "framework": framework, "precision": precision, "matmul": start["precision"]["matmul"],
                  "padding": f"fixed {args.seq_len}" if "--fixed_padding" in extra else "dynamic",
                  "lora_dim": lora_dim,
                  "trainable_params": start["trainable_params"], "total_params": start["total_params"],
                  "batch": args.batch, "measured_steps": len(measured),
                  "ms_per_step": 1000 * seconds / len(measured),
                  "median_ms_per_step": statistics.median(e["ms_per_batch"] for e in measured),
                  "real_tokens_per_s": real_tokens / seconds,
                  "real_tokens_per_step": real_tokens / len(measured),
                  "padded_tokens_per_step": sum(e["padded_tokens_per_batch"] for e in measured) / len(measured),
                  "step_ms": [e["ms_per_batch"] for e in measured], "losses": [e["loss"] for e in steps],
                  "peak_allocated_mib": stats.get("peak_allocated_mib"),
                  "peak_reserved_mib": stats.get("peak_reserved_mib"), "nvidia_smi_peak_mib": smi_peak,
                  "wall_s": wall, "model_tflop_per_step": None, "executed_tflop_per_step": None,
                  "model_tflops": None, "mfu": None, "executed_utilization": None, "peak_tflops": None}
        if not same_batches:
            result["flops_note"] = "batches not reconstructed (real tokens differ from the log): no FLOP count"
            return result
        measured_batches = batches[args.warmup:]
        model = sum(step_flops(self.config, lora, b[0], b[1]) for b in measured_batches)
        executed = sum(step_flops(self.config, lora, b[0], b[1], width=b[2]) for b in measured_batches)
        peak, _ = peak_for(gpu_name, precision) if precision in ("bf16", "tf32", "fp32") else (None, None)
        result.update(model_tflop_per_step=model / len(measured) / 1e12,
                      executed_tflop_per_step=executed / len(measured) / 1e12, model_tflops=model / seconds / 1e12,
                      peak_tflops=peak, mfu=model / seconds / 1e12 / peak if peak else None,
                      executed_utilization=executed / seconds / 1e12 / peak if peak else None)
        return result

    # ---- beam search

    def beam_base(self):
        """A random base of --card with its tied embedding scaled (peaked scores, see the module docstring)."""
        from lora_nlg.checkpoints.tensor_files import save_safetensors
        from lora_nlg.model.init_weights import init_gpt2_weights
        weights = init_gpt2_weights(self.config, presets.PAPER_SEED)
        weights["wte.weight"] *= np.float32(BEAM_WTE_SCALE)
        path = os.path.join(self.scratch, "beam_base.safetensors")
        save_safetensors(path, weights)
        return path

    def beam_inputs(self):
        rows = [item for _, item in read_jsonl(os.path.join(self.data, "test.jsonl"))]
        contexts, _ = unique_contexts([(row["context"], row["completion"]) for row in rows])
        contexts = contexts[:self.args.beam_inputs] if self.args.beam_inputs else contexts
        path = os.path.join(self.scratch, "beam_test.jsonl")
        write_jsonl(path, [{"context": c, "completion": [50256]} for c in contexts])
        return path, len(contexts)

    def beam(self, framework, python, base, test):
        args = self.args
        settings = {**presets.beam_settings("e2e", "paper"), "seq_len": args.seq_len, "device": args.device}
        if args.eval_len:
            settings["eval_len"] = args.eval_len
        settings["min_length"] = settings["eval_len"]  # every input generates eval_len tokens (module docstring)
        runs, predictions = [], {}
        for batch in (1, args.beam_batch):
            if self.over_budget():
                raise CheckError(f"time budget of {args.budget_s:.0f}s spent before beam batch {batch}")
            label = f"{framework}_beam_batch{batch}"
            flags = ["--data", test, "--init_checkpoint", base, "--model_card", args.card,
                     *presets.as_flags({**settings, "batch_size": batch}), "--exact", "--work_dir", self.scratch,
                     "--output_file", f"{label}.jsonl"]
            attempts = 2 if framework == "jittor" else 1  # Jittor: a cold run compiles the kernels first
            for attempt in range(attempts):
                suffix = ".cold" if attempt < attempts - 1 else ""
                wall, stats, smi_peak = run_cli(python, framework, "gpt2_beam.py", flags,
                                                os.path.join(self.logs, f"{label}{suffix}.out.txt"),
                                                os.path.join(self.scratch, f"{label}.stats.json"), self.threads,
                                                self.time_left())
            with open(os.path.join(self.logs, f"{label}.out.txt"), encoding="utf-8") as f:
                match = EXAMPLES_PER_S.search(f.read())
            if not match:
                raise CheckError(f"{label}.out.txt: no 'examples/s' line from gpt2_beam.py")
            with open(os.path.join(self.scratch, f"{label}.jsonl"), encoding="utf-8") as f:
                predictions[batch] = [json.loads(line)["predict"] for line in f]
            runs.append({"batch": batch, "inputs": int(match.group(1)), "seconds": float(match.group(2)),
                         "examples_per_s": float(match.group(3)), "peak_allocated_mib": stats.get("peak_allocated_mib"),
                         "nvidia_smi_peak_mib": smi_peak, "wall_s": wall})
        one, many = predictions[1], predictions[args.beam_batch]
        differing = sum(a != b for a, b in zip(one, many)) + abs(len(one) - len(many))
        return {"framework": framework, "beam": settings["beam"], "eval_len": settings["eval_len"],
                "precision": "fp32 (--exact)", "inputs": runs[0]["inputs"], "runs": runs,
                "speedup": runs[1]["examples_per_s"] / runs[0]["examples_per_s"], "identical": differing == 0,
                "differing_predictions": differing,
                "mean_generated_tokens": statistics.mean(len(p) for p in one) if one else 0.0}

    # ---- one framework

    def framework(self, framework, python, gpu_name, base, test):
        train, errors = [], []
        for name, extra, frameworks in TRAIN_CONFIGS:
            if framework not in frameworks:
                continue
            if self.over_budget():
                errors.append(f"{framework} {name}: skipped, time budget of {self.args.budget_s:.0f}s spent")
                continue
            print(f"[gpu_check] {framework} training {name} ({self.elapsed():.0f}s)", flush=True)
            try:
                train.append(self.train(framework, python, name, extra, gpu_name))
                r = train[-1]
                print(f"[gpu_check]   {r['ms_per_step']:.1f} ms/step, {r['real_tokens_per_s']:.0f} real tokens/s, "
                      f"MFU {fmt(r['mfu'], '.1%')}, peak {fmt(r['peak_allocated_mib'], '.0f')} MiB", flush=True)
            except CheckError as error:
                errors.append(f"{framework} {name}: {error}")
                print(f"[gpu_check]   FAILED: {error}", flush=True)
        beam = None
        print(f"[gpu_check] {framework} beam search ({self.elapsed():.0f}s)", flush=True)
        try:
            beam = self.beam(framework, python, base, test)
            print(f"[gpu_check]   batch 1 {beam['runs'][0]['examples_per_s']:.2f} vs batch {self.args.beam_batch} "
                  f"{beam['runs'][1]['examples_per_s']:.2f} examples/s, outputs "
                  f"{'identical' if beam['identical'] else 'DIFFERENT'}", flush=True)
        except CheckError as error:
            errors.append(f"{framework} beam: {error}")
            print(f"[gpu_check]   FAILED: {error}", flush=True)
        return train, beam, errors


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def jittor_plan(args):
    """(run?, one line): Jittor runs on the GPU only with a CUDA 11.x-12.x toolkit and a python with jittor."""
    decision = jittor_setup.decide(jittor_setup.gather_facts())
    if decision.error:
        return False, f"Jittor skipped: {decision.error}"
    if decision.device != "cuda":
        return False, f"Jittor skipped: {decision.reason}"
    probe = subprocess.run([args.jittor_python, "-c", "import importlib.util, sys; "
                            "sys.exit(importlib.util.find_spec('jittor') is None)"], capture_output=True)
    if probe.returncode != 0:
        return False, (f"Jittor skipped: {args.jittor_python} has no jittor "
                       f"(bash scripts/setup_env.sh makes .venv-jittor)")
    if args.smoke:
        return False, f"Jittor skipped: --smoke (Jittor would run: {decision.reason})"
    return True, f"Jittor: {decision.reason}"


def checks_of(train, beam):
    rows = []
    by_name = {r["name"]: r for r in train}
    if "lora_tf32" in by_name and "lora_tf32_fixed512" in by_name:
        dynamic, fixed = by_name["lora_tf32"], by_name["lora_tf32_fixed512"]
        diff = max(abs(a - b) for a, b in zip(dynamic["losses"], fixed["losses"]))
        rows.append({"check": f"{dynamic['framework']}: dynamic / {fixed['padding']} padding real tokens/s",
                     "value": round(dynamic["real_tokens_per_s"] / fixed["real_tokens_per_s"], 2),
                     "note": f"max |loss diff| {diff:.2g} (same batches)"})
    if "lora_tf32" in by_name and "full_ft_tf32" in by_name:
        rows.append({"check": f"{by_name['lora_tf32']['framework']}: full fine-tuning / LoRA ms per step",
                     "value": round(by_name["full_ft_tf32"]["ms_per_step"] / by_name["lora_tf32"]["ms_per_step"], 2),
                     "note": ""})
    if beam:
        rows.append({"check": f"{beam['framework']}: beam batch {beam['runs'][1]['batch']} / batch 1 examples/s",
                     "value": round(beam["speedup"], 2),
                     "note": "outputs identical" if beam["identical"] else
                     f"outputs DIFFER ({beam['differing_predictions']} of {beam['inputs']})"})
    return rows


def markdown(results):
    env, s = results["environment"], results["settings"]
    lines = [f"# GPU check ({results['mode']}, {results['started']}, {results['wall_s']:.0f} s)", "",
             f"- GPU: {env.get('gpu') or 'none'} (driver {env.get('driver', '-')}, "
             f"{env.get('gpu_memory_gib', '-')} GiB, compute capability {env.get('capability', '-')})",
             f"- torch {env.get('torch', '-')} (CUDA {env.get('torch_cuda') or '-'}, cuDNN {env.get('cudnn') or '-'}), "
             f"python {env['python']}, {env['cpus']} CPUs",
             f"- {results['jittor']['line']}", "",
             f"## Training: {s['card']} (random init), E2E, batch {s['batch']}, {s['warmup']} warm-up + {s['steps']} "
             f"measured steps", "",
             "| framework | run | arithmetic | padding | trainable params | ms/step | real tokens/s "
             "| padded tokens/step | model TFLOP/step | TFLOP/s | MFU | peak GPU MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["train"] + results["jittor"]["train"]:
        peak = r["peak_allocated_mib"] if r["peak_allocated_mib"] is not None else r["nvidia_smi_peak_mib"]
        lines.append(f"| {r['framework']} | {r['name']} | {r['precision']} | {r['padding']} "
                     f"| {r['trainable_params']:,} | {r['ms_per_step']:.1f} | {r['real_tokens_per_s']:,.0f} "
                     f"| {r['padded_tokens_per_step']:,.0f} | "
                     f"{fmt(r['model_tflop_per_step'], '.3f')} | {fmt(r['model_tflops'], '.1f')} | "
                     f"{fmt(r['mfu'], '.1%')} | {fmt(peak, ',.0f')} |")
    peaks = results["peak_tflops"]
    peak_text = (f"{peaks['gpu']}: " + ", ".join(f"{k} {v:g}" for k, v in peaks["values"].items())
                 + f" TFLOP/s, {peaks['source']}") if peaks["values"] else "no peak known for this device: no MFU"
    lines += ["", f"Dense peaks: {peak_text}.", f"FLOPs: {results['flops_formula']}.", ""]
    beams = [b for b in (results["beam"], results["jittor"]["beam"]) if b]
    if beams:
        b0 = beams[0]
        lines += [f"## Beam search: {s['card']}, {b0['inputs']} E2E test inputs, beam {b0['beam']}, "
                  f"at most {b0['eval_len']} tokens, {b0['precision']}", "",
                  "| framework | batch | examples/s | seconds | peak GPU MiB |", "|---|---|---|---|---|"]
        for b in beams:
            for run in b["runs"]:
                peak = run["peak_allocated_mib"]
                peak = run["nvidia_smi_peak_mib"] if peak is None else peak
                lines.append(f"| {b['framework']} | {run['batch']} | {run['examples_per_s']:.2f} "
                             f"| {run['seconds']:.1f} | {fmt(peak, ',.0f')} |")
        lines.append("")
    lines += ["| check | value | note |", "|---|---|---|"]
    lines += [f"| {c['check']} | {c['value']} | {c['note']} |" for c in results["checks"]]
    if results["errors"]:
        lines += ["", "Errors:", *[f"- {e}" for e in results["errors"]]]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder with encoded E2E train.jsonl, test.jsonl (scripts/gpu_data.sh)")
    parser.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "gpu_check_out"))
    parser.add_argument("--python", default=sys.executable, help="python with torch for the PyTorch tree")
    parser.add_argument("--jittor_python", default=None,
                        help="python with jittor (default .venv-jittor/bin/python if present, else --python)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU test of the script itself: gpt2.tiny, batch 2, seq_len 128, 1 + 1 steps, 3 random "
                             "inputs, 4 tokens, --device cpu")
    parser.add_argument("--card", default=None, help="model card (default gpt2.md; --smoke: gpt2.tiny)")
    parser.add_argument("--device", default=None, help="default cuda (--smoke: cpu)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default 8, the paper's; --smoke 2)")
    parser.add_argument("--seq_len", type=int, default=None,
                        help="longest row and --fixed_padding's width (default 512, the paper's; --smoke 128)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured steps (default 10; --smoke 1)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default 20; --smoke 2)")
    parser.add_argument("--beam_inputs", type=int, default=0, help="first N unique test inputs (0: all)")
    parser.add_argument("--beam_batch", type=int, default=16)
    parser.add_argument("--eval_len", type=int, default=None, help="tokens generated at most (default E2E's 64)")
    parser.add_argument("--peak_gpu", default=None,
                        help="take the peaks of this PEAK_TFLOPS entry (e.g. H100) instead of the GPU's own name")
    parser.add_argument("--budget_s", type=float, default=400.0,
                        help="start no new run after this many seconds (the check must end within 8 minutes)")
    parser.add_argument("--deadline_s", type=float, default=450.0, help="kill a run still going at this many seconds")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.card = args.card or ("gpt2.tiny" if smoke else "gpt2.md")
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.batch = args.batch or (2 if smoke else 8)
    args.seq_len = args.seq_len or (128 if smoke else 512)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 10)
    args.steps = args.steps if args.steps is not None else (1 if smoke else 20)
    args.eval_len = args.eval_len or (4 if smoke else None)
    if smoke:
        args.beam_inputs = args.beam_inputs or 3
    venv_jittor = os.path.join(ROOT, ".venv-jittor", "bin", "python")
    args.jittor_python = args.jittor_python or (venv_jittor if os.path.isfile(venv_jittor) else args.python)
    args.out = os.path.abspath(args.out)
    args.data = os.path.abspath(args.data) if args.data else None
    # a relative python path must survive the runs' change of directory (a bare name is looked up on PATH)
    args.python, args.jittor_python = (os.path.abspath(p) if os.sep in p else p
                                       for p in (args.python, args.jittor_python))
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    check = Check(args)
    try:
        return measure(args, check, started)
    finally:
        shutil.rmtree(check.scratch, ignore_errors=True)  # the beam base alone is 1.4 GB


def measure(args, check, started):
    env = environment(args)
    print("[gpu_check] environment: " + json.dumps(env), flush=True)
    if "error" in env:
        raise SystemExit(f"error: {args.python}: no usable torch ({env['error']})")
    gpu_name = args.peak_gpu or env.get("gpu")  # the name the peak table is looked up by
    if args.device.startswith("cuda") and not env.get("cuda_available"):
        raise SystemExit(f"error: {args.python}: torch {env.get('torch')} sees no CUDA GPU (use --smoke on a CPU)")
    base = check.beam_base()
    test, n_inputs = check.beam_inputs()
    train, beam, errors = check.framework("pytorch", args.python, gpu_name, base, test)
    run_jittor, line = jittor_plan(args)
    print(f"[gpu_check] {line}", flush=True)
    jittor = {"ran": run_jittor, "line": line, "train": [], "beam": None}
    if run_jittor:
        jittor["train"], jittor["beam"], more = check.framework("jittor", args.jittor_python, gpu_name, base, test)
        errors += more
    peak_key = peak_for(gpu_name, "tf32")[1]
    results = {
        "mode": "smoke" if args.smoke else "full", "started": started, "wall_s": check.elapsed(), "ok": False,
        "environment": env,
        "settings": {"card": args.card, "batch": args.batch, "seq_len": args.seq_len, "warmup": args.warmup,
                     "steps": args.steps,
                     "device": args.device, "data": args.data or "random smoke data", "beam_inputs": n_inputs,
                     "beam_batch": args.beam_batch, "beam_wte_scale": BEAM_WTE_SCALE, "budget_s": args.budget_s,
                     "train_flags": presets.train_settings("e2e", "paper")},
        "peak_tflops": {"gpu": peak_key, "source": PEAK_SOURCE,
                        "values": dict(PEAK_TFLOPS)[peak_key] if peak_key else None},
        "flops_formula": FLOPS_FORMULA, "train": train, "beam": beam, "jittor": jittor,
        "checks": checks_of(train, beam) + checks_of(jittor["train"], jittor["beam"]), "errors": errors,
    }
    expected = len([c for c in TRAIN_CONFIGS if "pytorch" in c[2]])
    results["ok"] = (not errors and len(train) == expected and beam is not None and beam["identical"]
                     and (not run_jittor or (jittor["beam"] is not None and jittor["beam"]["identical"])))
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    text = markdown(results)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    print(f"[gpu_check] {'ok' if results['ok'] else 'FAILED'} in {check.elapsed():.0f}s; wrote "
          f"{os.path.join(args.out, 'results.json')} and results.md", flush=True)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_cli":  # the child process of run_cli
        _, _, framework_name, script_name, stats_file, separator, *cli_flags = sys.argv
        cli_child(framework_name, script_name, stats_file, cli_flags)
    else:
        sys.exit(main())
