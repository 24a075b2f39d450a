"""scripts/benchmark.py's verdicts on hand-made measurements (the timings themselves need the real runs)."""
import importlib.util
import pathlib

from lora_nlg.util.jsonl import read_jsonl, write_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def run(framework, padding, step_ms, losses=(2.0, 1.5)):
    return {"framework": framework, "card": "gpt2.tiny", "padding": padding, "step_ms": list(step_ms),
            "losses": list(losses)}


def verdicts(train, beam=(), identical=None):
    rows = benchmark.checks(train, list(beam), identical or {})
    return {row["check"]: (row["value"], row["verdict"]) for row in rows}


def test_ratios_are_medians_of_per_step_ratios_so_one_slow_step_does_not_decide():
    rows = verdicts([run("pytorch", "dynamic", [100, 100, 900]), run("pytorch", "fixed 512", [400, 400, 400]),
                     run("jittor", "dynamic", [110, 500, 120]), run("jittor", "fixed 512", [200, 220, 240])])
    # fixed / dynamic per step: 4, 4, 0.44 -> 4.0; jittor / torch dynamic: 1.1, 5, 0.13 -> 1.1
    assert rows["pytorch gpt2.tiny: dynamic / fixed-512 real tokens/s"] == ("4.00x (max |loss diff| 0)",
                                                                          "pass (target >= 3)")
    assert rows["gpt2.tiny dynamic: jittor / pytorch ms/step"] == ("1.10x", "pass (target <= 1.15)")
    assert rows["gpt2.tiny fixed 512: jittor / pytorch ms/step"] == ("0.55x", "pass (target <= 1.15)")
    # jittor fixed / dynamic per step: 1.82, 0.44, 2.0 -> 1.82
    assert rows["jittor gpt2.tiny: dynamic / fixed-512 real tokens/s"] == ("1.82x (max |loss diff| 0)",
                                                                         "MISS (target >= 3)")


def test_different_losses_or_outputs_are_flagged_even_when_fast():
    rows = verdicts([run("pytorch", "dynamic", [100], losses=(2.0,)), run("pytorch", "fixed 512", [500],
                                                                          losses=(2.1,))])
    assert rows["pytorch gpt2.tiny: dynamic / fixed-512 real tokens/s"][1].endswith("but losses DIFFER")
    beam = [{"framework": "pytorch", "batch": 1, "examples_per_s": 1.0},
            {"framework": "pytorch", "batch": 16, "examples_per_s": 6.0}]
    rows = verdicts([], beam, {"pytorch": False})
    assert rows["pytorch: beam batch 16 / batch 1 examples/s"] == (
        "6.00x, outputs DIFFERENT", "pass (target >= 5) but outputs differ")
    both = beam + [{**row, "framework": "jittor"} for row in beam]
    rows = verdicts([], both, {"pytorch": True, "jittor": True, "cross": False})
    assert rows["beam outputs pytorch vs jittor"] == ("DIFFERENT", "MISS")


def test_one_against_several_processes_per_framework():
    runs = [{"framework": framework, "processes": n, "batch": 8, "ms_per_step": 100.0 / n, "step_ms": [100.0 / n] * 3,
             "losses": [5.0, 4.0 + (n - 1) * 1e-6, 3.0]} for framework in ("pytorch", "jittor") for n in (1, 2)]
    rows = benchmark.process_rows(runs)
    assert [(r["framework"], r["processes"], r["speedup"]) for r in rows] == [("pytorch", 2, 2.0), ("jittor", 2, 2.0)]
    assert abs(rows[0]["max_loss_diff"] - 1e-6) < 1e-9
    assert "| pytorch | 8 | 100.0 | 2 | 50.0 | 2.00x |" in benchmark.process_report(rows)


def test_sequence_length_points_compare_the_frameworks_at_each_length():
    rows = verdicts([run("pytorch", "186 tokens", [300, 310]), run("jittor", "186 tokens", [330, 372]),
                     run("pytorch", "384 tokens", [600, 600]), run("jittor", "384 tokens", [900, 960])])
    assert rows == {"gpt2.tiny 186 tokens: jittor / pytorch ms/step": ("1.15x", "pass (target <= 1.15)"),
                    "gpt2.tiny 384 tokens: jittor / pytorch ms/step": ("1.55x", "MISS (target <= 1.15)")}


def test_length_rows_are_exactly_that_long_with_the_loss_on_their_end(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"context": list(range(i, i + 30)), "completion": [7, 8, 9]}
                                          for i in range(200)])
    bench = object.__new__(benchmark.Bench)
    bench.args = benchmark.parse_args(["--steps", "2", "--warmup", "1", "--batch", "4", "--length_loss_tokens", "5"])
    bench.scratch, bench.data = str(tmp_path), str(tmp_path)
    rows = [row for _, row in read_jsonl(bench.length_data(50))]
    assert len(rows) == (1 + 2) * 4
    assert all(len(r["context"]) == 45 and len(r["completion"]) == 5 for r in rows)
    stream = [t for i in range(200) for t in [*range(i, i + 30), 7, 8, 9]]
    assert [t for r in rows for t in r["context"] + r["completion"]] == stream[:len(rows) * 50]
