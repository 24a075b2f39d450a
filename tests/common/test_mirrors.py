"""The two framework trees are mirrors: NLG_pytorch/src/X.py and NLG_jittor/src/X.py define the same
top-level functions and classes, the same methods, with the same parameter names (read with `ast`, so
neither framework is imported). scripts/mirror_diff.py counts the lines in which the pairs differ."""
import ast
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TREES = ("pytorch", "jittor")
SRC = {framework: ROOT / f"NLG_{framework}" / "src" for framework in TREES}
PAIRS = ("distributed.py", "gpt2_beam.py", "gpt2_decode.py", "gpt2_ft.py", "lora.py", "model.py", "optim.py")
ONLY_IN = {"pytorch": set(), "jittor": {"jittor_env.py", "cpu_kernels.py"}}  # Jittor set-up; C++ CPU kernels
SAME_METHOD = {"execute": "forward"}  # a jt.Module runs `execute` where a torch nn.Module runs `forward`
# definitions one framework needs and the other has no counterpart for: (tree, file, name) -> why
FRAMEWORK_ONLY = {
    ("jittor", "model.py", "GPT2LMModel.train"): "jt.Module.train would also stop gradients (set_trainable)",
    ("jittor", "model.py", "GPT2LMModel.eval"): "the same, switching LoRA dropout off",
    ("pytorch", "optim.py", "AdamW._foreach_update"): "Jittor has no _foreach ops (its loop runs in one jt.sync)",
}

spec = importlib.util.spec_from_file_location("mirror_diff", ROOT / "scripts" / "mirror_diff.py")
mirror_diff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mirror_diff)


def parameters(function):
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args]
    names += [f"*{arguments.vararg.arg}"] if arguments.vararg else []
    names += [a.arg for a in arguments.kwonlyargs]
    names += [f"**{arguments.kwarg.arg}"] if arguments.kwarg else []
    return tuple(names)


def definitions(path):
    """Qualified name -> parameter names of each top-level function, class (None) and method in a file."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = parameters(node)
        elif isinstance(node, ast.ClassDef):
            found[node.name] = None
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{SAME_METHOD.get(item.name, item.name)}"] = parameters(item)
    return found


def test_every_module_has_its_twin():
    files = {framework: {path.name for path in SRC[framework].glob("*.py")} for framework in TREES}
    for framework in TREES:
        assert files[framework] - ONLY_IN[framework] == set(PAIRS), framework
    assert mirror_diff.mirrored_pairs(ROOT) == sorted(PAIRS)


@pytest.mark.parametrize("name", PAIRS)
def test_twins_define_the_same_functions_classes_methods_and_parameters(name):
    found = {framework: definitions(SRC[framework] / name) for framework in TREES}
    for (framework, file, qualified), why in FRAMEWORK_ONLY.items():
        if file == name:  # listed, so it must exist in that tree only (the list cannot go stale)
            other = "jittor" if framework == "pytorch" else "pytorch"
            assert qualified in found[framework] and qualified not in found[other], why
            del found[framework][qualified]
    pytorch, jittor = found["pytorch"], found["jittor"]
    assert sorted(pytorch) == sorted(jittor), f"{name}: defined in one tree only: {set(pytorch) ^ set(jittor)}"
    differing = {key: (pytorch[key], jittor[key]) for key in pytorch if pytorch[key] != jittor[key]}
    assert not differing, f"{name}: parameters differ (pytorch, jittor): {differing}"


def test_the_framework_free_script_is_the_same_file_in_both_trees():
    pytorch, jittor = ((SRC[framework] / "gpt2_decode.py").read_text(encoding="utf-8") for framework in TREES)
    assert pytorch == jittor


def test_mirror_diff_counts_differing_lines(capsys):
    assert mirror_diff.differing_lines(["a", "b", "c"], ["a", "x", "c", "d"]) == 3  # b | x, d
    assert mirror_diff.main(["--root", str(ROOT)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == sorted(PAIRS)
    counts = {line.split()[0]: int(line.split()[-1]) for line in lines[1:]}
    assert counts["gpt2_decode.py"] == 0 and all(counts[name] > 0 for name in PAIRS if name != "gpt2_decode.py")
