"""Batches from datasets: `make_loader` picks tensor slicing or a DataLoader; both give an
order that is a function of (seed, epoch), so a resumed run sees the batches an uninterrupted
one would. Also how many decoding processes a run uses (`resolve_workers`, ...)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from cnnctl.config import DataConfig
from cnnctl.data.datasets import ArrayDataset, LabelledDataset
from cnnctl.runtime.distributed import shard_order


class Batches(Protocol):
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


class TensorBatches:
    """Batches sliced straight from an in-memory uint8 tensor: no per-sample Python."""

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        pin: bool,
        shard: tuple[int, int] | None = None,
        weights: torch.Tensor | None = None,
    ):
        images, labels = data.images, data.labels
        if pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.shard = batch_size, shuffle, seed, shard
        self.weights = weights  # data.sampler: balanced: each epoch's draw (see _epoch_order)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-_shard_count(len(self.labels), self.shuffle, self.shard) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle or self.shard is not None:  # an order to index: this rank's part of it
            order = _epoch_order(n, self.shuffle, self.seed, self.epoch, self.weights)
            mine = shard_order(order, self.shard, pad=self.shuffle)
            for start in range(0, len(mine), self.batch_size):
                index = mine[start : start + self.batch_size]
                yield self.images[index], self.labels[index]
        else:  # the stored order: plain slices, no index
            for start in range(0, n, self.batch_size):
                yield (
                    self.images[start : start + self.batch_size],
                    self.labels[start : start + self.batch_size],
                )


class EpochLoader:
    """A DataLoader whose shuffle order and worker seeds are a function of (seed, epoch).

    That makes a resumed run see the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool,
        seed: int,
        workers: int,
        pin: bool,
        shard: tuple[int, int] | None = None,
        weights: torch.Tensor | None = None,
    ):
        self.generator = torch.Generator()
        self.seed = seed
        # The order is `_epoch_order`, the same as TensorBatches', so a dataset gives the same
        # batches whether it is decoded from files or sliced from memory (data.cache).
        self.sampler = _EpochSampler(len(dataset), shuffle, seed, shard, weights)
        self.loader: DataLoader[Any] = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=pin,
            generator=self.generator,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(_epoch_seed(self.seed, epoch))
        self.sampler.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


def _epoch_order(
    n: int, shuffle: bool, seed: int, epoch: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Epoch `epoch`'s order: a seeded permutation, or with `weights` (one per sample) n draws
    with replacement in proportion to them (data.sampler: balanced)."""
    if not shuffle:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    if weights is not None:  # inverse-CDF draws: no limit on the number of samples (multinomial has 2^24)
        cdf = weights.double().cumsum(0)
        u = torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True).clamp(max=n - 1)
    return torch.randperm(n, generator=generator)


class _EpochSampler(torch.utils.data.Sampler[int]):
    """The (seed, epoch) order; under torchrun this rank's part of it, like DistributedSampler."""

    def __init__(
        self, n: int, shuffle: bool, seed: int, shard: tuple[int, int] | None, weights: torch.Tensor | None
    ):
        self.n, self.shuffle, self.seed, self.shard, self.weights = n, shuffle, seed, shard, weights
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        order = _epoch_order(self.n, self.shuffle, self.seed, self.epoch, self.weights)
        return iter(shard_order(order, self.shard, pad=self.shuffle).tolist())

    def __len__(self) -> int:
        return _shard_count(self.n, self.shuffle, self.shard)


def _shard_count(n: int, shuffle: bool, shard: tuple[int, int] | None) -> int:
    """How many of an epoch's n samples one rank gets (`shard_order`: padded when shuffled)."""
    if shard is None:
        return n
    rank, world = shard
    return -(-n // world) if shuffle else len(range(rank, n, world))


def make_loader(
    dataset: LabelledDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    workers: int,
    pin: bool,
    shard: tuple[int, int] | None = None,
    weights: torch.Tensor | None = None,
) -> Batches:
    """The fastest correct loader for a dataset: tensor slicing when nothing is per-sample.

    `shard` = (rank, world) under torchrun: this process's part of every epoch. `weights`
    (one per sample, with `shuffle`): each epoch draws len(dataset) samples in proportion.
    """
    if isinstance(dataset, ArrayDataset) and dataset.augment is None:
        return TensorBatches(dataset, batch_size, shuffle, seed, pin, shard, weights)
    return EpochLoader(dataset, batch_size, shuffle, seed, workers, pin, shard, weights)


def resolve_workers(cfg: DataConfig, in_memory: bool) -> int:
    if cfg.num_workers != "auto":
        return int(cfg.num_workers)
    return 0 if in_memory else default_workers()


def decode_workers(cfg: DataConfig) -> int:
    """Processes for a decode-only pass (image check, data.cache): nothing else runs then, so
    `auto` uses every core (at most 8); an explicit data.num_workers is kept."""
    if cfg.num_workers != "auto":
        return int(cfg.num_workers)
    cores = os.cpu_count() or 1
    return min(8, cores) if cores > 1 else 0


def default_workers() -> int:
    """Decoding processes for files: one core left to the model, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))
