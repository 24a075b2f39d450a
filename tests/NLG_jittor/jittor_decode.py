"""Jittor's gpt2_beam.py run in this process, as the torch side runs its own (the beam alignment tests)."""
import contextlib
import io

import gpt2_beam
from jittor_env import jt


def decode_in_jittor(adapter, work_dir, beam_flags):
    """Run Jittor's gpt2_beam.py main as the torch side runs its own; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), jt.flag_scope(use_cuda=jt.flags.use_cuda):  # --device cpu: not after
        gpt2_beam.main([*beam_flags, "--lora_checkpoint", str(adapter), "--work_dir", str(work_dir)])
    return printed.getvalue()
