"""The `image_folder` source: `root/<class>/*` or `root/{train,val,test}/<class>/*`, decoded
on demand or once into a cache (`data.cache`), unreadable files dropped first
(`data.check_images`). Also the folder a checkpoint is evaluated on (`folder_eval_set`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data import cache, folder
from cnnctl.data.check import check_files
from cnnctl.data.datasets import ArrayDataset, FileDataset, Splits
from cnnctl.data.folder import FolderSplit
from cnnctl.data.inputs import STATS_SAMPLE, input_size, norm_stats
from cnnctl.data.loaders import decode_workers
from cnnctl.data.splits import assemble, carve, members, split_files, strata
from cnnctl.data.transforms import InputSpec
from cnnctl.report.console import printable


def build(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    """The split folders (or the one folder) as datasets; val and test carved from train when
    the folder has none; `normalize: auto` measured on train's images."""
    assert cfg.root is not None  # guaranteed by DataConfig
    root = Path(cfg.root)
    extensions = folder.normalise_extensions(cfg.extensions)
    dirs = split_dirs(root, cfg.split_folders)
    scanned = {name: folder.scan_split(path, extensions) for name, path in dirs.items()}
    return from_scan(cfg, seed, spec, scanned, lambda checked: _shared_classes(cfg, checked, dirs))


def split_dirs(root: Path, named: Mapping[Any, str] | None) -> dict[str, Path]:
    """Each split's folder: data.split_folders' names under root, else train/ val/ test/ when
    root has a train/ folder, else root itself as train."""
    if named is None:
        return folder.find_split_dirs(root) or {"train": root}
    folder.class_folders(root)  # root itself must exist: one line if not
    dirs = {role: root / name for role, name in named.items()}
    seen: dict[str, str] = {}
    for role, path in dirs.items():
        if not path.is_dir():
            raise DataError(f"{printable(str(path))}: no such folder (data.split_folders.{role})")
        real = os.path.realpath(path)
        if real in seen:  # two names (a link, another spelling) for one folder: the same images twice
            raise DataError(
                f"data.split_folders: {seen[real]} and {role} are the same folder ({printable(str(path))})"
            )
        seen[real] = role
    return dirs


def from_scan(
    cfg: DataConfig,
    seed: int,
    spec: InputSpec | None,
    scanned: dict[str, FolderSplit],
    classes_of: Callable[[dict[str, FolderSplit]], list[str]],
    groups: dict[str, str] | None = None,
    what: str = "class folder(s)",
    rows: Mapping[str, str] | None = None,
) -> Splits:
    """Splits from lists of image files with their class names (an image folder's or a
    manifest's): checked, labelled by `classes_of(checked splits)`, the missing splits carved
    from train (whole groups with `groups`: file → group), cached, normalised."""
    decode = spec or InputSpec(cfg.channels or 3, input_size(cfg), cfg.resize, (0.0,), (1.0,))
    mode = cache.resolve_mode(cfg.cache, sum(len(s.files) for s in scanned.values()), decode)
    workers = decode_workers(cfg)
    predecoded: dict[str, torch.Tensor] = {}
    if cfg.check_images:  # decoding to the cache's input spec on the way when there is a cache to fill
        scanned = checked_splits(scanned, decode if mode != "off" else None, workers, predecoded, what, rows)
    classes = classes_of(scanned)
    need_test = "test" not in scanned and cfg.test_fraction is not None
    need_val, pooled = "val" not in scanned, 0
    if cfg.cv is not None and not need_val:  # cross-validation folds train and val together
        pooled, scanned = len(scanned["val"].files), pool_val(scanned)
    labels = {name: targets_for(s, classes) for name, s in scanned.items()}
    train_groups = [groups[f] for f in scanned["train"].files] if groups is not None else None
    single = classes if labels["train"].dim() == 1 else None
    carved = carve(cfg, strata(labels["train"]), seed, need_val, need_test, train_groups, pooled, single)
    decoded: dict[str, torch.Tensor] = {}
    if mode != "off":
        decoded = {
            n: cache.cached_images(s.files, decode, mode, workers, predecoded) for n, s in scanned.items()
        }
        predecoded.clear()
    if spec is None:
        spec = _measured_spec(cfg, decode, scanned["train"], labels["train"], carved[0], decoded)
    given = _datasets(scanned, labels, decoded, spec)
    splits = assemble(cfg, given, carved, classes, spec)
    splits.files = split_files({n: s.files for n, s in scanned.items()}, carved)
    splits.ids = dict(splits.files)
    splits.members = members(scanned, carved, groups)
    return splits


def pool_val(scanned: dict[str, FolderSplit]) -> dict[str, FolderSplit]:
    """The splits with val's files appended to train's (data.cv folds them together)."""
    train, val = scanned["train"], scanned["val"]
    joined = FolderSplit(
        train.root,
        [*train.files, *val.files],
        [*train.class_of_file, *val.class_of_file],
        sorted(set(train.classes_present) | set(val.classes_present)),
        train.separator,
    )
    return {"train": joined, **{n: s for n, s in scanned.items() if n not in ("train", "val")}}


def targets_for(split: FolderSplit, classes: list[str]) -> torch.Tensor:
    """A split's targets in `classes` order: (N,) class indices, or (N, labels) multi-hot floats
    for a multi-label split; a name not among `classes` is an error."""
    if split.separator is None:
        return torch.tensor(folder.labels_for(split, classes), dtype=torch.long)
    index = {name: i for i, name in enumerate(classes)}
    out = torch.zeros(len(split.files), len(classes))
    for row, label in enumerate(split.class_of_file):
        for name in folder.names_in(label, split.separator):
            out[row, index[name]] = 1.0  # names were checked against classes (classes_of)
    return out


def _shared_classes(cfg: DataConfig, scanned: dict[str, FolderSplit], dirs: dict[str, Path]) -> list[str]:
    """The label order (train's folders, or data.classes); every split must have the same set."""
    classes = folder.resolve_classes(scanned["train"].classes_present, cfg.classes, dirs["train"])
    for name in ("val", "test"):
        if name in scanned and set(scanned[name].classes_present) != set(classes):
            raise DataError(
                f"{dirs[name]}: its classes {scanned[name].classes_present} differ from "
                f"train's {classes}; every split needs the same class folders"
            )
    return classes


def _measured_spec(
    cfg: DataConfig,
    decode: InputSpec,
    train: FolderSplit,
    labels: torch.Tensor,
    train_idx: list[int],
    decoded: dict[str, torch.Tensor],
) -> InputSpec:
    """The decode spec with data.normalize's stats, measured on up to STATS_SAMPLE train images."""
    probe = FileDataset(train.files, labels, decode)
    step = max(1, len(train_idx) // STATS_SAMPLE)
    picked = train_idx[::step][:STATS_SAMPLE]

    def sample() -> torch.Tensor:  # the same images, cached or decoded now
        if decoded:
            return decoded["train"][picked]
        return torch.stack([probe[i][0] for i in picked])

    mean, std = norm_stats(cfg, decode.channels, sample)
    return InputSpec(decode.channels, decode.size, decode.resize, mean, std)


def _datasets(
    scanned: dict[str, FolderSplit],
    labels: dict[str, torch.Tensor],
    decoded: dict[str, torch.Tensor],
    spec: InputSpec,
) -> dict[str, FileDataset | ArrayDataset]:
    """Each split folder's dataset: its cached images when there is a cache, else its files."""
    if decoded:
        return {n: ArrayDataset(decoded[n], labels[n]) for n in scanned}
    return {n: FileDataset(scanned[n].files, labels[n], spec) for n in scanned}


def checked_splits(
    scanned: dict[str, FolderSplit],
    decode: InputSpec | None = None,
    workers: int = 0,
    decoded: dict[str, torch.Tensor] | None = None,
    what: str = "class folder(s)",
    rows: Mapping[str, str] | None = None,
) -> dict[str, FolderSplit]:
    """Every split without its unreadable files (fully decoded once, verdicts cached).

    The skipped files are counted and listed in one warning; a class left with no
    readable image is an error before training. With `decode`, the images decoded for the
    check are added to `decoded` (path → uint8 input) for the cache to reuse.
    """
    every = [f for split in scanned.values() for f in split.files]
    report = check_files(every, decode=decode, workers=workers)
    if decoded is not None:
        decoded.update(report.decoded)
    if not report.bad:
        return scanned
    logging.getLogger("cnnctl").warning(report.summary(rows=rows))
    bad = {path for path, _ in report.bad}
    return {name: _without(split, bad, what) for name, split in scanned.items()}


def _without(split: FolderSplit, bad: set[str], what: str) -> FolderSplit:
    """`split` less the files in `bad`; a class folder left empty is an error."""
    pairs = [(f, c) for f, c in zip(split.files, split.class_of_file, strict=True) if f not in bad]
    emptied = sorted(
        set(split.classes_present) - folder.present_names([c for _, c in pairs], split.separator)
    )
    if emptied:
        raise DataError(
            f"{split.root}: {what} {emptied} have no readable image left; "
            "`cnnctl data check CONFIG` lists the unreadable files"
        )
    return FolderSplit(
        split.root, [f for f, _ in pairs], [c for _, c in pairs], split.classes_present, split.separator
    )


def folder_eval_set(
    root: Path, split: str, spec: InputSpec, classes: list[str], extensions: list[str] | None
) -> FileDataset:
    """An image folder prepared with a checkpoint's input spec and class list (for evaluate).

    If `root` has train/val/test folders the named split is used, else the whole folder.
    The folder's class set must equal the checkpoint's.
    """
    dirs = folder.find_split_dirs(root)
    if dirs is not None:
        if split not in dirs:
            raise DataError(f"{root}: has no {split}/ folder (found: {', '.join(dirs)})")
        root = dirs[split]
    scanned = checked_splits({split: folder.scan_split(root, folder.normalise_extensions(extensions))})[split]
    if set(scanned.classes_present) != set(classes):
        raise DataError(
            f"{root}: its classes {scanned.classes_present} differ from the checkpoint's {classes}"
        )
    return FileDataset(scanned.files, folder.labels_for(scanned, classes), spec)
