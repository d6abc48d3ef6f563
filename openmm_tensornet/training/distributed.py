"""Data-parallel training across processes (``torchrun``): which process this is, how a global batch is shared
out, and the gradient sum. One process without ``torchrun`` is the same code with a world of one.

Every process reads the whole data set and draws the same batch order; each takes an equal contiguous share of
each global batch, computes its loss normalised by the *global* batch's counts, and the gradients are summed
across processes before the (identical) optimiser step, so the run equals one process with the same global
batch up to the order of floating-point sums. Only process 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> List[T]:
        """This process's contiguous share of a global batch (the first ones get one more when it does not
        divide evenly; a share can be empty)."""
        base, extra = divmod(len(items), self.size)
        start = self.rank * base + min(self.rank, extra)
        return list(items[start:start + base + (1 if self.rank < extra else 0)])

    def sum_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients over the processes. A parameter without a gradient in every process (unused) keeps
        none, as in one process; one with a gradient somewhere gets zeros where it has none (an empty share)."""
        if self.size == 1 or not parameters:
            return
        flags = torch.tensor([float(p.grad is not None) for p in parameters], device=parameters[0].device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.SUM)
        for parameter, flag in zip(parameters, flags.tolist()):
            if flag == 0.0:
                continue
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            torch.distributed.all_reduce(parameter.grad, op=torch.distributed.ReduceOp.SUM)

    def sum(self, value: float, device: torch.device) -> float:
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return float(tensor)

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


def world_from_environment(device: torch.device) -> World:
    """The process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), joined with NCCL on
    GPUs and gloo on CPUs; a world of one without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not torch.distributed.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed; install a full torch build.")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(device: str, local_rank: Optional[int] = None) -> torch.device:
    """``TrainingConfig.device``: "auto" (a GPU when torch sees one, else the CPU), "cpu", "cuda" or "cuda:N".
    Under ``torchrun`` each process takes the GPU of its local rank."""
    if device not in ("auto", "cpu") and not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but torch sees no GPU (torch {torch.__version__}, CUDA "
                             f"{torch.version.cuda or 'none'}); use device: cpu, or install a CUDA build of torch.")
        if device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
            device = f"cuda:{local % torch.cuda.device_count()}"
    return torch.device(device)
