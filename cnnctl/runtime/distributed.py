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

Leaving the group (`close`) must free it, not only unregister it: the gloo backend runs
worker threads (`pt_gloo_runloop`) and a socket loop (`gloo_tcp_loop`), and only the
group's destructor stops them. A group still referenced when Python exits keeps them
running while the interpreter finalizes; a worker that then releases a finished
collective's tensor takes the GIL, CPython 3.11 ends that thread with pthread_exit, the
unwind meets a C++ destructor, and the rank dies of `terminate called without an active
exception` (SIGABRT). Two things kept the group alive after destroy_process_group():
torch.distributed.nn.functional, whose functions take `group=group.WORLD` as a default
argument evaluated when the module is first imported (DistributedDataParallel imports it,
so when that came after init_process_group its defaults held the group for good; it is
now imported before), and, when an error ends the job, its traceback: the frames it went
through hold the group (torch's collective functions) and the DDP model (the training
frames), which `close` now clears and detaches. docs/distributed.md has the evidence,
`bench/ddp_soak.py` the soak test.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import sys
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnctl.core.errors import ConfigError

TIMEOUT = datetime.timedelta(minutes=10)  # a collective waiting longer than this fails the job


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # the DistributedDataParallel wrappers `wrap` made, for `close` to detach from the group
    _wrapped: list[weakref.ref[torch.nn.Module]] = field(default_factory=list, repr=False, compare=False)

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
    def launched_main() -> bool:
        """Is this process torchrun's rank 0 (or not under torchrun at all)? Readable before the
        process group exists: for work one rank alone must do before training starts."""
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0"

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
        # Before init_process_group, so that the `group=group.WORLD` defaults of its functions
        # are None, not this group: imported later (DDP imports it), they would hold the group,
        # and its threads, past destroy_process_group into interpreter exit (see the module doc).
        from torch.distributed.nn import functional  # noqa: F401

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
        wrapped = DistributedDataParallel(model, device_ids=ids)
        self._wrapped.append(weakref.ref(wrapped))
        return wrapped

    def close(self) -> None:
        """Leave the process group and free it, so that its threads stop here, not at exit.

        Each rank only waits for its own collectives in flight (the group's destructor
        does): no barrier, which would hang a rank whose peer failed elsewhere. Called while
        an error is on its way out (from a `finally`), it first clears the locals of the
        frames that error left, which hold the group (torch's collectives, the training
        frames' DDP model); and the DDP wrappers `wrap` made are detached from the group,
        wherever they are still referenced: they cannot be used afterwards.
        """
        if not self.enabled:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        _clear_frames_of(sys.exc_info()[1])
        group = weakref.ref(dist.group.WORLD)
        while self._wrapped:
            wrapper = self._wrapped.pop()()
            if wrapper is not None:  # its reducer and logger hold the group too
                for name in ("reducer", "logger", "process_group"):
                    wrapper.__dict__.pop(name, None)
        dist.destroy_process_group()
        if group() is not None:
            gc.collect()  # a wrapper in a reference cycle
        if group() is not None:
            logging.getLogger("cnnctl").warning(
                "distributed: the process group is still referenced after leaving it; its threads "
                "run on until exit, where they can abort this process"
            )


def _clear_frames_of(err: BaseException | None) -> None:
    """Drop the local variables of the finished frames in `err`'s traceback and its causes'
    (the frames still running, this one's callers, are left alone)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if err.__traceback__ is not None:
            traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__


# How gloo (and the TCP store) word a collective failing because a peer process went away.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def peer_gone(err: BaseException) -> bool:
    """Did a collective fail because another process of the job is gone (failed, killed)?
    The caller can then say so in one line: the other process's own error says why."""
    return isinstance(err, RuntimeError) and any(sign in str(err) for sign in _PEER_GONE)


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
