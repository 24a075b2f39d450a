"""Small helpers every other subpackage uses: one-line user errors, atomic file writes, jsonl, shared flag checks."""
