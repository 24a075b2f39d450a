"""Framework-free core of the LoRA GPT-2 NLG reproduction.

Everything here imports neither torch nor jittor: tokenizer, dataset formats, sampling, batching,
GPT-2 cards, the numpy weight initialiser, checkpoint I/O, logs, decode, metrics and plots. Both
framework trees (`NLG_pytorch/src`, `NLG_jittor/src`) and the `data/`, `eval/`, `scripts/` CLIs use it.
"""
