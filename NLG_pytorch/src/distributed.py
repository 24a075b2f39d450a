"""Several processes, one run (torchrun / torch.distributed.launch): the process group and the sums over ranks.

What is summed, and why the result is one process's: lora_nlg.util.ranks. Gloo on CPU, NCCL on CUDA (one GPU
per rank). With one process there is no process group and every method returns its input.
"""
import datetime

import numpy as np
import torch
import torch.distributed as dist

from lora_nlg.util.ranks import TIMEOUT_S

BUCKET = 1 << 24  # elements per all-reduce when summing gradients (one flat copy of at most this size)


class Collective:
    """The sums over the ranks of one run; `ranks`: lora_nlg.util.ranks.Ranks, `device`: this rank's device."""

    def __init__(self, ranks, device):
        self.ranks, self.device = ranks, device
        if ranks.size > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                                    world_size=ranks.size, timeout=datetime.timedelta(seconds=TIMEOUT_S))

    def sum_array(self, values):
        """The element-wise sum over ranks of a float64 numpy array (losses, prediction tokens), on every rank."""
        values = np.asarray(values, dtype=np.float64)
        if self.ranks.size == 1:
            return values
        tensor = torch.from_numpy(values.copy()).to(self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def summed(self, tensors):
        """The tensors (gradients), each replaced in place by its sum over ranks; returns them."""
        if self.ranks.size == 1:
            return tensors
        bucket = []
        for tensor in [*tensors, None]:
            if tensor is not None:
                bucket.append(tensor)
            if bucket and (tensor is None or sum(t.numel() for t in bucket) >= BUCKET):
                flat = torch.cat([t.reshape(-1) for t in bucket])
                dist.all_reduce(flat)
                for t, part in zip(bucket, flat.split([t.numel() for t in bucket])):
                    t.copy_(part.view_as(t))
                bucket = []
        return tensors

    def broadcast(self, tensors):
        """Rank 0's values of the tensors (the trainable weights at start) on every rank, in place."""
        if self.ranks.size > 1:
            for tensor in tensors:
                dist.broadcast(tensor, 0)

    def close(self):
        if self.ranks.size > 1 and dist.is_initialized():
            dist.destroy_process_group()
