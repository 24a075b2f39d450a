"""How far the two trees are from mirrors: differing lines of each module present in both src folders.

    python scripts/mirror_diff.py            # one line per pair: lines in each file, differing lines
    python scripts/mirror_diff.py --diff     # and the unified diff of each pair that differs

NLG_pytorch/src/X.py and NLG_jittor/src/X.py are written line for line alike, so their diff should show
only framework lines (torch vs jt calls, Jittor-only workarounds and their comments). A differing line
is one that `diff` marks with < or > (a line of one file without its twin in the other). Standard
library only: it runs in either environment, or none. tests/common/test_mirrors.py checks the pairs'
functions, classes and parameters.
"""
import argparse
import difflib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TREES = ("pytorch", "jittor")


def src(root, framework):
    return pathlib.Path(root) / f"NLG_{framework}" / "src"


def mirrored_pairs(root=ROOT):
    """Names of the .py files present in both trees' src folders, sorted."""
    names = [{path.name for path in src(root, framework).glob("*.py")} for framework in TREES]
    return sorted(set.intersection(*names))


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def differing_lines(a, b):
    """Lines of `a` and of `b` (lists of lines) that have no counterpart in the other."""
    matched = sum(block.size for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return len(a) + len(b) - 2 * matched


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--diff", action="store_true", help="also print the unified diff of each differing pair")
    parser.add_argument("--root", default=str(ROOT), help="the repository (default: this script's)")
    args = parser.parse_args(argv)
    print(f"{'pair':<16} {'pytorch':>8} {'jittor':>8} {'differing':>10}")
    for name in mirrored_pairs(args.root):
        a, b = (read_lines(src(args.root, framework) / name) for framework in TREES)
        print(f"{name:<16} {len(a):>8} {len(b):>8} {differing_lines(a, b):>10}")
        if args.diff and a != b:
            sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(
                a, b, f"NLG_pytorch/src/{name}", f"NLG_jittor/src/{name}", lineterm=""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
