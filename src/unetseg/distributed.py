"""torchrun helpers: start the process group from the environment, reduce, agree.

``fit()`` calls ``setup()``: with ``WORLD_SIZE`` > 1 in the environment (as ``torchrun``
sets it) it initialises ``torch.distributed`` (gloo on CPU, nccl on CUDA) and returns this
process's rank; otherwise it is a single-process no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import TrainingError

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "broadcast_floats",
    "local_rank",
    "setup",
    "sync_buffers",
    "teardown",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # fit() started the process group and must destroy it

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise TrainingError(f"environment variable {name}={value!r} is not an integer") from None


def local_rank() -> int:
    """This process's ``LOCAL_RANK`` under torchrun (its GPU on the node); 0 otherwise."""
    return _env_int("LOCAL_RANK", 0)


def setup(device: torch.device) -> DistInfo:
    """Join the torchrun process group if there is one.

    Args:
        device: the device this process trains on; picks the backend (nccl for CUDA).

    Returns:
        This process's ``DistInfo``.

    Raises:
        TrainingError: ``WORLD_SIZE`` > 1 but the process group cannot start (no
            ``MASTER_ADDR``/``RANK``, say: the script was not started by torchrun).
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo()
    if not dist.is_available():
        raise TrainingError("WORLD_SIZE is set but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend=backend)
    except (ValueError, RuntimeError) as err:  # torch's rendezvous errors, bare
        raise TrainingError(
            f"WORLD_SIZE={world_size} is set but torch.distributed cannot start ({err}); "
            "launch with torchrun, which also sets RANK, MASTER_ADDR and MASTER_PORT, or "
            "unset WORLD_SIZE to train in one process"
        ) from None
    return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), True)


def teardown(info: DistInfo) -> None:
    """Destroy the process group if ``setup`` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op on one process) and return it."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_floats(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank, so decisions taken on clocks agree everywhere."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return [float(v) for v in tensor.tolist()]


def sync_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Average floating buffers (BatchNorm running stats) over ranks; copy the rest from rank 0.

    DDP broadcasts rank 0's buffers before each forward, but the last forward of an epoch
    leaves each rank with statistics of its own batch; validation, the best-weights copy
    and the final model must see the same buffers everywhere.
    """
    if not info.enabled:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(info.world_size)
        else:
            dist.broadcast(buffer, src=0)
