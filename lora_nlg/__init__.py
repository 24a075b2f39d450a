"""Framework-free core of the LoRA GPT-2 NLG reproduction, written once and used by both trees.

Nothing here imports torch or jittor (a test checks it). Subpackages, in data-flow order:

- `data`: raw dataset files -> context/completion records -> GPT-2 BPE ids -> numpy batches.
  `fetch` (official URLs, sha256, local mirror), `format_converting` (microsoft/LoRA's texts),
  `records` (one dataset's splits), `sampling` (stratified by input), `squad_truncation`,
  `tokenizer` (GPT-2 BPE, `encode_records`), `batching` (train/eval/query batches),
  `pretrain_corpus` (the CPU demo's base corpus).
- `model`: `config` (GPT2Config, LoRAConfig, the named cards, tensor shapes), `init_weights`
  (the numpy initialisation both trees load, so they start from identical weights).
- `checkpoints`: `tensor_files` (safetensors read/write, shape checks), `torch_zip` (torch .bin
  read without torch), `gpt2_weights` (any GPT-2 layout -> canonical names), `adapter` (trained
  tensors + json), `hf_export` (a Hugging Face folder: base, or merged with an adapter; tokenizer files),
  `peft_format` (our adapters <-> peft's LoRA folders).
- `train`: `cli` (gpt2_ft.py flags), `loop` (the training loop each tree's engine runs under),
  `state` (exact resume), `schedules`, `logs` (the reference's log lines + jsonl).
- `decode`: `beam` (beam-search rules and bookkeeping), `beam_cli` / `beam_model` / `beam_loop`
  (gpt2_beam.py's flags, weights and loop), `to_text` (gpt2_decode.py: ids -> scorer files).
- `metrics`: the official scorers' numbers (E2E, GenerationEval, SQuAD v1.1); `cli` (what eval/ shares).
- `pipeline`: `presets`, `stages` (resumable stages with verified outputs), `seeds` (mean / std over
  training seeds), `frameworks` (each tree's venv, scripts and launchers), `compare` + `plots` (two runs side
  by side).
- `util`: `errors` (one-line user errors), `files` (atomic writes, checked reads), `jsonl`, `flags` (device,
  matmul precision, reproducibility), `work_dir` (a run's locked output folder), `ranks` (several processes
  computing what one computes: which rows and inputs are each rank's), `jittor_setup` (how Jittor is configured
  on this machine, decided without importing it).
"""
