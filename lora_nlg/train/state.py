"""Framework-neutral training state, so a killed run resumes with exactly the losses of an unbroken one.

One file, `<work_dir>/train_state.safetensors`, written atomically (latest only): the tensors are
the trainable weights (`param.<name>`), the optimizer state (`optim.step`, `optim.exp_avg.<name>`,
...) and gradients accumulated towards an update not yet made (`grad.<name>`, with --grad_acc > 1);
the counters (step, epoch, batch position), best validation result, log-interval meter, fp16 loss
scale and the settings the run was started with are JSON in the file's metadata.

There is no framework RNG state to save: the trainer reseeds the framework RNG (LoRA dropout) from
`step_seed(seed, step, rank)` before every batch, so the random stream of a step depends only on
(seed, step, rank) — in both trees, and across a resume. With several processes rank 0 alone writes the
file; its `grad.*` tensors are then the gradient accumulated by all ranks (summed when saving, see
lora_nlg.train.loop.Run.save), which a resumed rank 0 takes and the other ranks start from zero.
"""
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from safetensors import safe_open

from lora_nlg.checkpoints.tensor_files import save_safetensors
from lora_nlg.util.errors import CheckpointError

STATE_FILE = "train_state.safetensors"
STATE_FORMAT = "lora_nlg-train-state-1"
ARRAY_GROUPS = ("param", "optim", "grad")


@dataclass
class TrainState:
    """Where training stands. `step` counts batches (microsoft/LoRA's train_step), `epoch` is 1-based
    and `batch` is the number of batches of `epoch` already trained."""
    settings: dict
    step: int = 0
    epoch: int = 1
    batch: int = 0
    n_evals: int = 0
    best_loss: float = None
    best_step: int = None
    meter: dict = field(default_factory=dict)
    loss_scale: dict = field(default_factory=dict)
    framework: str = ""


def step_seed(seed, step, rank=0):
    """A 31-bit seed for the framework RNG at `step`, decorrelated across steps and seeds, and across the ranks
    of a several-process run (each draws the dropout masks of its own rows; rank 0's stream is one process's)."""
    entropy = [seed, step] + ([rank] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def pack_arrays(groups):
    """{"param": {...}, "optim": {...}, "grad": {...}} -> flat `group.name` dict for one safetensors file."""
    return {f"{group}.{name}": value for group in ARRAY_GROUPS for name, value in groups.get(group, {}).items()}


def unpack_arrays(arrays):
    groups = {group: {} for group in ARRAY_GROUPS}
    for key, value in arrays.items():
        group, _, name = key.partition(".")
        groups[group][name] = value
    return groups


def save_train_state(path, state, groups):
    """Write the state atomically (a kill during the write leaves the previous state intact)."""
    save_safetensors(path, pack_arrays(groups),
                     metadata={"format": STATE_FORMAT, "state": json.dumps(asdict(state), sort_keys=True)})


def load_train_state(path):
    """(TrainState, array groups) of a state file; anything unreadable is a CheckpointError naming the file."""
    if not os.path.isfile(path):
        raise CheckpointError(path, "no training state to resume (run without --resume first)")
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:  # the library raises several types for bad files
        raise CheckpointError(path, f"unreadable training state ({error})") from None
    if metadata.get("format") != STATE_FORMAT:
        raise CheckpointError(path, f"not a training state (format {metadata.get('format')!r}, "
                                    f"expected {STATE_FORMAT!r})")
    unknown = sorted({key.partition(".")[0] for key in arrays} - set(ARRAY_GROUPS))
    if unknown:
        raise CheckpointError(path, f"unknown tensor group(s) {', '.join(unknown)}")
    try:
        state = TrainState(**json.loads(metadata["state"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f"invalid training state metadata ({error!r})") from None
    return state, unpack_arrays(arrays)


def check_settings(saved, current, path):
    """A resume with different training settings would not continue the same run: name every difference."""
    differences = [f"{name} {saved.get(name)!r} -> {current.get(name)!r}"
                   for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]
    if differences:
        raise CheckpointError(path, "cannot resume with different settings: " + "; ".join(differences))


@dataclass
class LossScale:
    """Dynamic fp16 loss scale as torch.amp.GradScaler keeps it: the loss is multiplied by `scale`
    before backward; an update whose gradients overflow is skipped and halves the scale, and
    `growth_interval` clean updates in a row double it. Disabled (scale 1) without --fp16."""
    enabled: bool = False
    scale: float = 2.0 ** 16
    clean_updates: int = 0
    growth_interval: int = 2000

    def __post_init__(self):
        if not self.enabled:
            self.scale = 1.0

    def update(self, overflowed):
        if not self.enabled:
            return
        if overflowed:
            self.scale /= 2.0
            self.clean_updates = 0
        else:
            self.clean_updates += 1
            if self.clean_updates == self.growth_interval:
                self.scale *= 2.0
                self.clean_updates = 0
