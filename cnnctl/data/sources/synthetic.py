"""The `synthetic` source: generated shape images (`cnnctl.data.synthetic`), held in memory."""

from __future__ import annotations

import torch

from cnnctl.config import DataConfig
from cnnctl.data import synthetic
from cnnctl.data.datasets import ArrayDataset, Splits
from cnnctl.data.inputs import input_size, norm_stats
from cnnctl.data.splits import carve, row_ids
from cnnctl.data.transforms import InputSpec, build_augment, fit_size, pil_to_uint8, to_mode


def build(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    """Generated images at the input size, val (and test) carved from them."""
    size = spec.size if spec else input_size(cfg)
    channels = spec.channels if spec else (cfg.channels or 3)
    images, labels, classes = synthetic.generate(
        cfg.num_classes, cfg.samples_per_class, max(size), seed, cfg.noise
    )
    tensor = torch.stack([pil_to_uint8(fit_size(to_mode(img, channels), size, None)) for img in images])
    full = ArrayDataset(tensor, torch.tensor(labels, dtype=torch.long))
    train_idx, val_idx, test_idx = carve(
        cfg, labels, seed, True, cfg.test_fraction is not None, classes=classes
    )
    if spec is None:
        mean, std = norm_stats(cfg, channels, lambda: tensor[train_idx])
        spec = InputSpec(channels, size, None, mean, std)
    augment = build_augment(cfg.augment, size)
    return Splits(
        train=full.subset(train_idx, augment),
        val=full.subset(val_idx),
        test=full.subset(test_idx) if test_idx else None,
        classes=classes,
        input=spec,
        ids=row_ids({"train": len(labels)}, (train_idx, val_idx, test_idx)),
    )
