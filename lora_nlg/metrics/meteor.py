"""METEOR 1.5 as GenerationEval runs it: `java -Xmx2G -jar meteor-1.5.jar HYP REF -l en -norm -r N`.

HYP has one (tokenised) hypothesis per line, REF the N references of each instance on N consecutive
lines. GenerationEval writes both without a final newline, so an empty LAST line is lost, the line
counts disagree and it reports -1; we end every line with a newline, which scores such a file as
METEOR does any other (the value is the same whenever the last hypothesis is not empty).
"""
import os
import re
import subprocess
import tempfile

from lora_nlg.metrics.java import java_executable, meteor_jar
from lora_nlg.util.errors import NLGError

_FINAL_SCORE = re.compile(rb"^Final score:\s+(\S+)\s*$", re.MULTILINE)


def meteor_score(references, hypotheses, num_refs, language="en"):
    """Corpus METEOR (0-1). references: num_refs strings per hypothesis."""
    command = [java_executable(), "-Xmx2G", "-jar", meteor_jar()]
    with tempfile.TemporaryDirectory(prefix="meteor-") as folder:
        hypothesis_file = os.path.join(folder, "hypothesis")
        reference_file = os.path.join(folder, "reference")
        _write_lines(hypothesis_file, hypotheses)
        _write_lines(reference_file, [group[i] for group in references for i in range(num_refs)])
        command += [hypothesis_file, reference_file, "-l", language, "-norm", "-r", str(num_refs)]
        result = subprocess.run(command, capture_output=True)
    found = _FINAL_SCORE.findall(result.stdout)
    if result.returncode != 0 or not found:
        messages = (result.stderr + result.stdout).decode("utf-8", "replace").strip().splitlines()
        raise NLGError(f"METEOR (java): failed ({messages[-1] if messages else f'exit code {result.returncode}'})")
    return float(found[-1])


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
