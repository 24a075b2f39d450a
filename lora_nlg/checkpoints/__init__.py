"""Checkpoint I/O in numpy: any GPT-2 weight file in, adapters and Hugging Face folders out, without torch."""
