"""Several processes, one run: which process (rank) this is, and which rows and inputs are its own.

Both trees train data-parallel so that N processes compute what ONE process computes:
- the data order is one process's: the global batch is `--train_batch_size` x N rows (microsoft/LoRA's
  meaning of the flag: rows per process), drawn exactly as one process would draw a batch of that size,
  and rank r takes rows [r * B, (r + 1) * B) of it (`batch_rows`);
- each rank divides its summed token losses by the mask total of the GLOBAL batch (`Batch.mask.sum()`,
  known to every rank from the data, no communication) and the gradients are SUMMED over ranks, so the
  update is the one-process update (a per-rank mean, as DDP and microsoft/LoRA do, is not: ranks with
  fewer completion tokens would weigh more);
- validation batches and test inputs are split into contiguous blocks (`block`), computed whole on one
  rank, and gathered in order, so the validation loss and the prediction file are one process's.
LoRA dropout is the exception: each rank draws its rows' masks from its own stream (`step_seed` with the
rank), so with dropout > 0 a run depends on N (as in microsoft/LoRA); with dropout 0 it does not.

The launchers: torchrun / `python -m torch.distributed.launch` (PyTorch: RANK, WORLD_SIZE, LOCAL_RANK) and
mpirun (Jittor: Open MPI's OMPI_COMM_WORLD_*); `from_environment` reads either.
"""
import os
from dataclasses import dataclass

from lora_nlg.util.errors import NLGError

TORCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
MPI_VARIABLES = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK")
TIMEOUT_S = 300  # a collective waiting longer than this stops the run (a rank died or hangs)


class LaunchError(NLGError):
    """A multi-process launch this run cannot take part in (one-line user error)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: `rank` of `size` processes, `local_rank` on its machine (its GPU)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launcher: str = "one process"

    @property
    def is_main(self):
        """Rank 0 alone writes logs, checkpoints, training state and predictions."""
        return self.rank == 0

    def describe(self):
        return "one process" if self.size == 1 else f"rank {self.rank} of {self.size} ({self.launcher})"


def _integers(environ, names, launcher):
    try:
        return [int(environ[name]) for name in names]
    except ValueError:
        values = ", ".join(f"{name}={environ[name]!r}" for name in names)
        raise LaunchError(f"{launcher}: {values}: expected integers") from None


def from_environment(environ=None, local_rank_flag=None):
    """The Ranks a launcher describes in the environment (torchrun's variables, else Open MPI's), else one process.

    `local_rank_flag`: the value of `--local_rank` / `--local-rank` (torch.distributed.launch without --use_env
    passes it as a flag); it must agree with LOCAL_RANK when both are given."""
    environ = os.environ if environ is None else environ
    if all(name in environ for name in TORCH_VARIABLES):
        rank, size, local = _integers(environ, TORCH_VARIABLES, "torchrun")
        launcher = "torchrun"
    elif all(name in environ for name in MPI_VARIABLES):
        rank, size, local = _integers(environ, MPI_VARIABLES, "mpirun")
        launcher = "mpirun"
    else:
        if local_rank_flag not in (None, 0, -1):
            raise LaunchError(f"--local_rank {local_rank_flag} without WORLD_SIZE / RANK in the environment: "
                              f"launch with torchrun (or torch.distributed.launch --use_env)")
        return Ranks()
    if not (size >= 1 and 0 <= rank < size and local >= 0):
        raise LaunchError(f"{launcher}: rank {rank} of {size} processes (local rank {local}) is not a valid place")
    if local_rank_flag not in (None, -1) and local_rank_flag != local:
        raise LaunchError(f"--local_rank {local_rank_flag} disagrees with the environment's local rank {local}")
    return Ranks(rank, size, local, launcher)


def add_local_rank(group):
    """--local_rank / --local-rank (an argparse group of gpt2_ft.py / gpt2_beam.py): what `python -m
    torch.distributed.launch` passes without --use_env; `from_environment` checks it."""
    group.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                       help="set by torch.distributed.launch; torchrun and mpirun set the environment instead")


def block(n, ranks):
    """The contiguous range of n items (validation batches, test inputs) that `ranks.rank` computes."""
    return range(ranks.rank * n // ranks.size, (ranks.rank + 1) * n // ranks.size)


def batch_rows(batch, ranks):
    """Rank r's rows [r * B, (r + 1) * B) of a global lora_nlg.data.batching.Batch of size * B rows."""
    if ranks.size == 1:
        return batch
    rows = batch.input.shape[0] // ranks.size
    part = slice(ranks.rank * rows, (ranks.rank + 1) * rows)
    lengths = batch.lengths[part]
    return batch._replace(input=batch.input[part], target=batch.target[part], mask=batch.mask[part],
                          lengths=lengths, n_real_tokens=int(lengths.sum()), ids=batch.ids[part])


def device_name(name, ranks, has_cuda):
    """The --device of this rank (auto, cpu, cuda or cuda:N, resolved): `auto` is cuda when the framework sees a
    GPU; with several processes `cuda` is cuda:LOCAL_RANK (one GPU each), and an explicit cuda:N, which would
    put every rank on one GPU, is refused."""
    if name == "auto":
        name = "cuda" if has_cuda else "cpu"
    if ranks.size == 1 or name == "cpu":
        return name
    if name != "cuda":
        raise LaunchError(f"--device {name} with {ranks.size} processes: each rank takes cuda:LOCAL_RANK; "
                          f"use --device auto or cuda (CUDA_VISIBLE_DEVICES picks the GPUs)")
    return f"cuda:{ranks.local_rank}"


ONE_PROCESS = Ranks()
