"""Learning-rate schedules of microsoft/LoRA's optimizer.py as a pure function, shared by both trees.

`step` counts optimizer steps already taken: lr_at(0, ...) is the rate of the FIRST update. The
reference sets the rate through a scheduler that is stepped after each optimizer step, so with
warm-up the first update uses lr 0 (LambdaLR evaluates its lambda at 0 on construction).
"""
import math

from lora_nlg.util.errors import NLGError

SCHEDULES = ("linear", "cosine", "constant")


class ScheduleError(NLGError):
    """An unknown schedule or steps that do not define one."""


def lr_at(step, lr, schedule, warmup_steps, max_steps):
    """Learning rate of update number `step` (0-based) with peak `lr`.

    linear   (get_linear_schedule_with_warmup): step / warmup below warmup_steps, then linear from
             lr at warmup_steps down to 0 at max_steps (and 0 after).
    cosine   (CosineAnnealingWarmupRestarts, min_lr 0, alpha 0): 0 at step 0 (the reference's init_lr),
             step / warmup below warmup_steps, then lr * (1 + cos(pi * min(step, max) / max)) / 2.
             The cosine is of step / max_steps, not of the progress after warm-up, as in the reference.
    constant (get_constant_schedule_with_warmup): step / warmup below warmup_steps, then lr.
    """
    if schedule not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")
    if warmup_steps < 0 or max_steps < 1:
        raise ScheduleError(f"need warmup_steps >= 0 and max_steps >= 1 (got {warmup_steps}, {max_steps})")
    if schedule == "cosine":
        if step == 0:
            return 0.0
        if step < warmup_steps:
            return lr * step / warmup_steps
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, max_steps) / max_steps))
    if step < warmup_steps:
        return lr * float(step) / float(max(1, warmup_steps))
    if schedule == "constant":
        return lr
    return lr * max(0.0, float(max_steps - step) / float(max(1, max_steps - warmup_steps)))
