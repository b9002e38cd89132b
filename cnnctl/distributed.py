"""Training on several processes with torchrun and DistributedDataParallel.

`torchrun --nproc_per_node N -m cnnctl train CONFIG` starts N copies of cnnctl; torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...) says which one each is.
`Dist.from_env()` reads it and joins the process group (nccl on CUDA, gloo on CPU); in a
plain single process it returns the trivial group and nothing here costs anything.

What the rest of cnnctl does with it:
- data: each rank takes every world-th sample of the epoch's order (`shard`); training
  pads the order so every rank runs the same number of steps (as DistributedSampler does),
  evaluation does not pad, so no sample is counted twice;
- metrics: sums (loss, correct, counts, confusion matrix) are all-reduced, so every rank
  sees the global figures and takes the same best-checkpoint / early-stopping decisions;
- files: only rank 0 writes the run dir, checkpoints, logs and plots.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch

from cnnctl.errors import ConfigError

TIMEOUT = datetime.timedelta(minutes=10)  # a collective waiting longer than this fails the job


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.world) if self.enabled else None

    @staticmethod
    def from_env(device_name: str) -> Dist:
        """Join torchrun's process group when WORLD_SIZE > 1; else the single-process group."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Dist()
        import torch.distributed as dist

        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        if cuda:
            if not torch.cuda.is_available() or local >= torch.cuda.device_count():
                raise ConfigError(
                    f"device {device_name}: local rank {local} has no GPU "
                    f"({torch.cuda.device_count()} here); use fewer processes per node or --device cpu"
                )
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        return Dist(rank, world, local)

    def device_name(self, configured: str) -> str:
        """One device per local rank: cuda → cuda:LOCAL_RANK; cpu stays cpu."""
        if not self.enabled or configured in ("cpu", "mps"):
            return configured
        if configured == "auto" and not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{self.local_rank}"

    # -- collectives (no-ops in one process) -----------------------------------------

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks, in place (on its device; gloo wants the CPU)."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """DistributedDataParallel around `model` (the model itself in one process)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def shard_order(order: torch.Tensor, shard: tuple[int, int] | None, pad: bool) -> torch.Tensor:
    """This rank's part of an epoch's sample order: every world-th index from its rank.

    With `pad` (training) the order is first extended by its own start so it divides evenly,
    and every rank gets the same count; without (evaluation) nothing is repeated.
    """
    if shard is None:
        return order
    rank, world = shard
    if pad and len(order) % world:
        extra = world - len(order) % world
        order = torch.cat([order, order[:extra].repeat(-(-extra // max(len(order), 1)))[:extra]])
    return order[rank::world]
