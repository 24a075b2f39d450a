"""The framework-free package must import neither torch nor jittor; the Jittor tree never imports torch."""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def _python_files(*dirs):
    for d in dirs:
        yield from sorted((ROOT / d).rglob("*.py"))


def test_shared_code_names_no_framework():
    offenders = [(str(p.relative_to(ROOT)), m) for p in _python_files("lora_nlg", "data", "eval")
                 for m in _imported_modules(p) if m in ("torch", "jittor")]
    assert offenders == []


def test_jittor_tree_names_no_torch():
    offenders = [str(p.relative_to(ROOT)) for p in _python_files("NLG_jittor", "tests/NLG_jittor")
                 if "torch" in set(_imported_modules(p))]
    assert offenders == []


def test_importing_every_shared_module_loads_no_framework():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in (ROOT / "lora_nlg").rglob("*.py"))
    code = ("import sys\nfor m in %r: __import__(m)\n"
            "bad = [m for m in ('torch', 'jittor') if m in sys.modules]\nassert not bad, bad" % modules)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
