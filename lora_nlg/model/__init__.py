"""What a GPT-2 + LoRA model is, independent of framework: its config, tensor shapes and initial weights."""
