"""JSON-lines files: read with errors that name the file and line, write byte-for-byte reproducibly.

Every data file between pipeline stages is one JSON object per line. Writing uses `json.dumps`
defaults (ASCII escapes, ", " and ": " separators), which is also what microsoft/LoRA's converters
and `gpt2_encode.py` write, so the same records give the same bytes.
"""
import json

from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import atomic_open


def read_jsonl(path, required=()):
    """Yield (line_number, dict) for each line; bad JSON, a non-object or a missing key is an NLGError."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise NLGError(f"{path}: line {number}: malformed JSON ({err.msg})") from None
                if not isinstance(item, dict):
                    raise NLGError(f"{path}: line {number}: expected a JSON object, got {type(item).__name__}")
                missing = [key for key in required if key not in item]
                if missing:
                    raise NLGError(f"{path}: line {number}: missing key {missing[0]!r}")
                yield number, item
    except OSError as err:
        raise NLGError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise NLGError(f"{path}: not UTF-8 text") from None


def write_jsonl(path, items):
    """Write one JSON object per line, atomically."""
    with atomic_open(path) as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
