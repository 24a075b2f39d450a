"""The per-dataset pipelines (scripts/run_*.sh): presets, resumable stages, each tree's venv,
log comparison and plots, and the several-seed statistics (--seeds)."""
