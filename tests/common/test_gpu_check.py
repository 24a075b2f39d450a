"""scripts/gpu_check.sh, the prepared device check, run end to end on the CPU (--smoke: gpt2.tiny, a few steps,
random data) so it cannot rot; and its FLOP count, peak table and imports checked by hand."""
import json
import os
import subprocess
import sys

import pytest

from lora_nlg.model.config import LoRAConfig, get_card
from testpaths import ROOT, load_script

gpu_check = load_script("scripts/gpu_check.py")

TRAIN_KEYS = {"name", "framework", "precision", "matmul", "padding", "lora_dim", "trainable_params", "total_params",
              "batch", "measured_steps", "ms_per_step", "median_ms_per_step", "real_tokens_per_s",
              "real_tokens_per_step", "padded_tokens_per_step", "step_ms", "losses", "peak_allocated_mib",
              "peak_reserved_mib", "nvidia_smi_peak_mib", "wall_s", "model_tflop_per_step", "executed_tflop_per_step",
              "model_tflops", "mfu", "executed_utilization", "peak_tflops"}
BEAM_KEYS = {"framework", "beam", "eval_len", "precision", "inputs", "runs", "speedup", "identical",
             "differing_predictions", "mean_generated_tokens"}
BEAM_RUN_KEYS = {"batch", "inputs", "seconds", "examples_per_s", "peak_allocated_mib", "nvidia_smi_peak_mib", "wall_s"}
ENVIRONMENT_KEYS = {"python", "platform", "cpus", "torch_python", "torch", "torch_cuda", "cuda_available", "cudnn",
                    "device"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--smoke", "--out", str(out),
                             "--python", sys.executable, "--peak_gpu", "H200"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), result.stdout


def test_results_json_has_every_key(smoke):
    _, results, _ = smoke
    assert set(results) == {"mode", "started", "wall_s", "ok", "environment", "settings", "peak_tflops",
                            "flops_formula", "train", "beam", "jittor", "checks", "errors"}
    assert results["mode"] == "smoke" and results["ok"] is True and results["errors"] == []
    assert ENVIRONMENT_KEYS <= set(results["environment"])
    assert [r["name"] for r in results["train"]] == ["lora_tf32", "lora_fp32", "lora_bf16", "lora_tf32_fixed512",
                                                    "full_ft_tf32"]
    for run in results["train"]:
        assert set(run) == TRAIN_KEYS, run["name"]
        assert run["ms_per_step"] > 0 and run["real_tokens_per_s"] > 0 and run["model_tflop_per_step"] > 0
        assert run["measured_steps"] == results["settings"]["steps"]
        # --peak_gpu H200: the MFU path runs on the CPU too (tiny values), with the peak of the run's arithmetic
        assert run["peak_tflops"] == {"bf16": 989.5, "fp32": 67.0}[run["precision"]]
        assert run["mfu"] == pytest.approx(run["model_tflops"] / run["peak_tflops"])
    by_name = {r["name"]: r for r in results["train"]}
    assert by_name["lora_bf16"]["precision"] == "bf16" and by_name["lora_tf32"]["precision"] == "fp32"  # CPU: no TF32
    assert by_name["lora_tf32_fixed512"]["padding"] == "fixed 128"  # --smoke pads to its seq_len 128
    assert by_name["full_ft_tf32"]["lora_dim"] == 0
    assert by_name["full_ft_tf32"]["trainable_params"] == by_name["full_ft_tf32"]["total_params"]
    assert by_name["lora_tf32_fixed512"]["executed_tflop_per_step"] > by_name["lora_tf32"]["executed_tflop_per_step"]
    # the same batches, whatever the padding: the same model FLOPs and losses
    assert by_name["lora_tf32_fixed512"]["model_tflop_per_step"] == by_name["lora_tf32"]["model_tflop_per_step"]
    assert set(results["beam"]) == BEAM_KEYS and all(set(r) == BEAM_RUN_KEYS for r in results["beam"]["runs"])
    assert [r["batch"] for r in results["beam"]["runs"]] == [1, 16] and results["beam"]["identical"]
    assert results["beam"]["mean_generated_tokens"] == results["beam"]["eval_len"]  # EOS banned before eval_len
    assert set(results["jittor"]) == {"ran", "line", "train", "beam"} and results["jittor"]["ran"] is False
    assert results["jittor"]["line"].startswith("Jittor skipped: ") and "\n" not in results["jittor"]["line"]
    assert results["peak_tflops"]["gpu"] == "H200" and results["peak_tflops"]["values"]["tf32"] == 494.5
    assert {c["check"] for c in results["checks"]} == {
        "pytorch: dynamic / fixed 128 padding real tokens/s", "pytorch: full fine-tuning / LoRA ms per step",
        "pytorch: beam batch 16 / batch 1 examples/s"}


def test_markdown_table_and_logs_are_written(smoke):
    out, results, stdout = smoke
    text = (out / "results.md").read_text()
    assert "| framework | run | arithmetic | padding | trainable params | ms/step | real tokens/s" in text
    assert text.count("| pytorch | lora_") == 4 and "| pytorch | full_ft_tf32 |" in text
    assert "| framework | batch | examples/s | seconds | peak GPU MiB |" in text
    assert results["jittor"]["line"] in text and text in stdout
    assert (out / "logs" / "pytorch_lora_tf32.log.jsonl").is_file()
    assert (out / "logs" / "pytorch_beam_batch16.out.txt").is_file()


def test_flops_by_hand():
    """gpt2.tiny: d 128, 4 layers, V 50257, N_block = 4 * 12 * 128^2 = 786432; LoRA r=4 on q,v: 8192 weights.
    One row of 10 tokens with 3 loss positions."""
    config = get_card("gpt2.tiny")
    assert gpu_check.block_matmul_weights(config) == 786432
    lora = LoRAConfig(r=4, alpha=32, dropout=0.1, targets="q,v")
    assert gpu_check.lora_weights(config, lora) == 8192
    dense = 2 * 786432 * 10 + 2 * 128 * 50257 * 3
    low_rank, attention = 2 * 8192 * 10, 4 * 4 * 128 * 10 ** 2
    assert gpu_check.step_flops(config, lora, [10], 3) == 2 * dense + 3 * low_rank + 3 * attention
    assert gpu_check.step_flops(config, LoRAConfig(r=0), [10], 3) == 3 * dense + 3 * attention
    padded_dense = 2 * 786432 * 16 + 2 * 128 * 50257 * 3  # executed: the row as wide as the batch (16)
    assert gpu_check.step_flops(config, lora, [10], 3, width=16) == (2 * padded_dense + 3 * 2 * 8192 * 16
                                                                      + 3 * 4 * 4 * 128 * 16 ** 2)


def test_peak_table():
    assert gpu_check.peak_for("NVIDIA H200", "bf16") == (989.5, "H200")
    assert gpu_check.peak_for("NVIDIA H100 80GB HBM3", "tf32") == (494.5, "H100")
    assert gpu_check.peak_for("NVIDIA H100 PCIe", "fp32") == (51.0, "H100 PCIe")
    assert gpu_check.peak_for("NVIDIA H200 NVL", "tf32") == (417.5, "H200 NVL")
    assert gpu_check.peak_for(None, "tf32") == (None, None)
    assert gpu_check.peak_for("Tesla T4", "tf32") == (None, None)
    assert gpu_check.arithmetic({"precision": {"autocast": "bfloat16", "matmul": "tf32"}}) == "bf16"
    assert gpu_check.arithmetic({"precision": {"autocast": None, "matmul": "float32 (exact)"}}) == "fp32"
    assert gpu_check.arithmetic({"precision": {"autocast": None, "matmul": "tf32"}}) == "tf32"


def test_the_device_machine_needs_only_its_packages():
    """The GPU machine has python3 with torch, numpy, safetensors, tokenizers, tqdm and transformers only: the CLIs
    and gpu_check.py import nothing else (no matplotlib, nltk, scorers, jittor, pytest)."""
    code = ("import sys, importlib.util\nimport gpt2_ft, gpt2_beam\n"
            "spec = importlib.util.spec_from_file_location('gpu_check', %r)\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))"
            % str(ROOT / "scripts" / "gpu_check.py"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "NLG_pytorch" / "src")])}  # as there
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                            env=env)
    local = {"gpt2_ft", "gpt2_beam", "model", "lora", "optim", "distributed", "lora_nlg"}
    available = {"torch", "numpy", "safetensors", "tokenizers", "tqdm", "transformers"}
    torch_own = {"torchgen", "typing_extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "filelock",
                 "fsspec"}
    extra = {m for m in result.stdout.split() if not m.startswith("_") and m != "cython_runtime"}
    assert extra - local - available - torch_own == set()
