"""Decoding without a framework: beam-search rules and bookkeeping, gpt2_beam.py's flags, weights and loop,
and gpt2_decode.py (ids -> the official scorers' files)."""
