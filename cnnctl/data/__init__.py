"""The data layer: `build_splits(cfg.data, seed)` → `Splits` (train, val, test, classes, input),
and `make_loader` for their batches.

This module only re-exports; each name lives in the module that owns it:
- `datasets`: ArrayDataset, FileDataset, LabelledDataset, Splits;
- `splits`: stratified_split and the carving of val/test from train that sources share;
- `inputs`: input_size, normalisation stats, prepare_images;
- `sources`: build_splits and the source builders by name (image_folder, csv, torchvision,
  synthetic); `sources.image_folder` also owns checked_splits and folder_eval_set;
- `loaders`: make_loader, TensorBatches, EpochLoader and the worker counts;
- the readers beneath them: `folder` and `walk` (image folders), `check`, `cache`,
  `csv_source`, `torchvision_source`, `synthetic`, `transforms`.
"""

from __future__ import annotations

from cnnctl.data import cache, check, csv_source, folder, synthetic, torchvision_source, transforms, walk
from cnnctl.data.datasets import ArrayDataset, Augment, FileDataset, LabelledDataset, Splits
from cnnctl.data.inputs import input_size, norm_stats, prepare_images
from cnnctl.data.loaders import (
    Batches,
    EpochLoader,
    TensorBatches,
    decode_workers,
    default_workers,
    make_loader,
    resolve_workers,
)
from cnnctl.data.sources import SOURCES, build_splits
from cnnctl.data.sources.image_folder import checked_splits, folder_eval_set
from cnnctl.data.splits import stratified_split

__all__ = [
    "SOURCES",
    "ArrayDataset",
    "Augment",
    "Batches",
    "EpochLoader",
    "FileDataset",
    "LabelledDataset",
    "Splits",
    "TensorBatches",
    "build_splits",
    "cache",
    "check",
    "checked_splits",
    "csv_source",
    "decode_workers",
    "default_workers",
    "folder",
    "folder_eval_set",
    "input_size",
    "make_loader",
    "norm_stats",
    "prepare_images",
    "resolve_workers",
    "stratified_split",
    "synthetic",
    "torchvision_source",
    "transforms",
    "walk",
]
