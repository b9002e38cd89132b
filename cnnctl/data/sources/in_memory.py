"""The `csv` and `torchvision` sources: native uint8 images read into memory, then converted
once to the input spec's channels and size."""

from __future__ import annotations

import torch

from cnnctl.config import DataConfig
from cnnctl.data import csv_source, torchvision_source
from cnnctl.data.datasets import ArrayDataset, Splits
from cnnctl.data.inputs import STATS_IN_MEMORY, input_size, norm_stats, prepare_images
from cnnctl.data.splits import assemble, carve
from cnnctl.data.transforms import InputSpec

Parts = dict[str, tuple[torch.Tensor, torch.Tensor]]  # split → uint8 (N, C, H, W) images, long labels


def build_csv(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    """data.train (and data.val / data.test) CSV files of pixel rows."""
    parts, classes = csv_source.load(cfg)
    return in_memory_splits(cfg, seed, spec, parts, classes)


def build_torchvision(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    """A torchvision data set, fitted to the input spec as it is read."""
    known = torchvision_source.lookup(cfg.name)
    if spec is None:
        target = (cfg.channels or known.channels, input_size(cfg), cfg.resize)
    else:
        target = (spec.channels, spec.size, spec.resize)
    parts, classes, fitted = torchvision_source.load(cfg, target)
    return in_memory_splits(cfg, seed, spec, parts, classes, fitted=fitted)


def in_memory_splits(
    cfg: DataConfig,
    seed: int,
    spec: InputSpec | None,
    parts: Parts,
    classes: list[str],
    fitted: bool = False,
) -> Splits:
    """Splits from native uint8 (N, C, H, W) images held in memory (csv, torchvision).

    `parts` holds "train" and the splits the source has ("val", "test"); the others are
    carved from train. Images are converted to the spec's channels and size once, here
    (`fitted`: the source already did).
    """
    images, labels = parts["train"]
    if spec is None:
        channels = cfg.channels or int(images.shape[1])
        size = input_size(cfg, (int(images.shape[2]), int(images.shape[3])))
        resize = cfg.resize
    else:
        channels, size, resize = spec.channels, spec.size, spec.resize
    prepared = {
        name: part if fitted else prepare_images(part, channels, size, resize)
        for name, (part, _) in parts.items()
    }
    need_test = "test" not in parts and cfg.test_fraction is not None
    need_val, pooled = "val" not in parts, 0
    if cfg.cv is not None and not need_val:  # cross-validation folds train and val together
        pooled = len(parts["val"][1])
        prepared["train"] = torch.cat([prepared["train"], prepared.pop("val")])
        labels = torch.cat([labels, parts["val"][1]])
        parts = {name: part for name, part in parts.items() if name != "val"}
    train_idx, val_idx, test_idx = carve(
        cfg, labels.tolist(), seed, need_val, need_test, pooled=pooled, classes=classes
    )
    train_all = ArrayDataset(prepared["train"], labels)
    if spec is None:
        step = max(1, -(-len(train_idx) // STATS_IN_MEMORY))
        mean, std = norm_stats(cfg, channels, lambda: train_all.images[train_idx[::step]])
        spec = InputSpec(channels, size, resize, mean, std)

    given = {name: ArrayDataset(prepared[name], parts[name][1]) for name in parts}
    given["train"] = train_all
    return assemble(cfg, given, (train_idx, val_idx, test_idx), classes, spec, pooled)
