"""Several processes, one run (mpirun): Jittor's MPI and the sums over ranks.

What is summed, and why the result is one process's: lora_nlg.util.ranks. Jittor's MPI operators (built when
Open MPI's `mpicc` is installed; on CUDA its NCCL, one GPU per rank). With one process every method returns
its input.
"""
import numpy as np

from jittor_env import jt
from lora_nlg.util.ranks import LaunchError


class Collective:
    """The sums over the ranks of one run; `ranks`: lora_nlg.util.ranks.Ranks, `device`: this rank's device."""

    def __init__(self, ranks, device):
        self.ranks, self.device = ranks, device
        if ranks.size > 1 and not (jt.in_mpi and jt.world_size == ranks.size and jt.rank == ranks.rank):
            raise LaunchError(f"mpirun started {ranks.size} processes but Jittor has no MPI (build it: apt-get "
                              f"install libopenmpi-dev, then run again; bash scripts/setup_env.sh does)")

    def sum_array(self, values):
        """The element-wise sum over ranks of a float64 numpy array (losses, prediction tokens), on every rank."""
        values = np.asarray(values, dtype=np.float64)
        if self.ranks.size == 1:
            return values
        return jt.array(values).mpi_all_reduce("add").numpy()

    def summed(self, tensors):
        """The Vars (gradients) summed over ranks: new Vars, in order."""
        if self.ranks.size == 1:
            return tensors
        summed = [t.mpi_all_reduce("add") for t in tensors]
        jt.sync(summed)
        return summed

    def broadcast(self, tensors):
        """Rank 0's values of the Vars (the trainable weights at start) on every rank, in place."""
        if self.ranks.size > 1:
            for tensor in tensors:
                tensor.update(tensor.mpi_broadcast(0))

    def close(self):
        """(Jittor's MPI ends with the process.)"""
