"""Datasets and loaders: `build_splits(cfg.data, seed)` → `Splits` (train, val, test, classes, input).

Every dataset yields `(uint8 image tensor (C, H, W), int label)`. In-memory sources hold
all images as one uint8 tensor; image folders decode files on demand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from cnnctl.config import NATIVE_SIZE, DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data import cache, csv_source, folder, synthetic, torchvision_source
from cnnctl.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    build_augment,
    channel_stats,
    fit_size,
    load_for_model,
    pil_to_uint8,
    to_mode,
)
from cnnctl.runtime.distributed import shard_order

Augment = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_SIZE = NATIVE_SIZE  # csv, torchvision: the data's native size
STATS_SAMPLE = 512  # images read to compute `normalize: auto` on an image folder
STATS_IN_MEMORY = 10_000  # at most this many (evenly spaced) for in-memory csv / torchvision data


class ArrayDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images held in memory as one uint8 (N, C, H, W) tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: Augment | None = None):
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        return (self.augment(image) if self.augment else image), int(self.labels[i])

    def subset(self, indices: Sequence[int], augment: Augment | None = None) -> ArrayDataset:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return ArrayDataset(self.images[index], self.labels[index], augment)

    def targets(self) -> list[int]:
        return [int(v) for v in self.labels]


class FileDataset(Dataset[tuple[torch.Tensor, int]]):
    """Image files decoded on demand to the input spec."""

    def __init__(
        self, files: Sequence[str], labels: Sequence[int], spec: InputSpec, augment: Augment | None = None
    ):
        self.files, self.labels, self.spec, self.augment = list(files), list(labels), spec, augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            image = load_for_model(self.files[i], self.spec)
        except Exception as err:  # noqa: BLE001 - any decoder failure names the file
            raise DataError(f"{self.files[i]}: cannot read image ({err})") from None
        return (self.augment(image) if self.augment else image), self.labels[i]

    def subset(self, indices: Sequence[int], augment: Augment | None = None) -> FileDataset:
        return FileDataset(
            [self.files[i] for i in indices], [self.labels[i] for i in indices], self.spec, augment
        )

    def targets(self) -> list[int]:
        return list(self.labels)


class LabelledDataset(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]: ...
    def targets(self) -> list[int]: ...


@dataclass
class Splits:
    """What a data config resolves to."""

    train: LabelledDataset
    val: LabelledDataset
    test: LabelledDataset | None
    classes: list[str]
    input: InputSpec
    files: dict[str, list[str]] = field(default_factory=dict)  # file-based sources: split → its files

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, ArrayDataset)


def stratified_split(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Split indices per class: returns [rest, part for fractions[0], part for fractions[1], ...].

    A part with a fraction > 0 gets at least one sample of each class that can spare one;
    each class keeps at least one sample in `rest`; the permutation is fixed by `seed`.
    """
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class):
        members = by_class[label]
        order = [members[j] for j in torch.randperm(len(members), generator=generator).tolist()]
        start = 0
        for k, fraction in enumerate(fractions):
            wanted = max(1, round(len(members) * fraction)) if fraction > 0 else 0
            take = max(0, min(wanted, len(members) - start - 1))
            parts[k + 1] += order[start : start + take]
            start += take
        parts[0] += order[start:]
    return [sorted(p) for p in parts]


def input_size(cfg: DataConfig, native: tuple[int, int] | None = None) -> tuple[int, int]:
    """(H, W) fed to the model: data.image_size, else the source's native size.

    `native` is the size of the images as read (csv, torchvision); without it the size is
    known from the config alone where it can be (csv image_shape, a torchvision dataset).
    """
    size = cfg.image_size
    if size is None:
        if native is not None:
            return native
        if cfg.source == "csv" and cfg.image_shape is not None:
            return cfg.image_shape[1], cfg.image_shape[2]
        if cfg.source == "torchvision" and cfg.name is not None and cfg.name in torchvision_source.KNOWN:
            size = torchvision_source.KNOWN[cfg.name].size
        else:
            size = DEFAULT_SIZE.get(cfg.source, 64)
    return (size, size) if isinstance(size, int) else (size[0], size[1])


def _norm_stats(
    cfg: DataConfig, channels: int, sample: Callable[[], torch.Tensor]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    norm = cfg.normalize
    if norm == "none":
        return (0.0,) * channels, (1.0,) * channels
    if norm == "imagenet":
        if channels == 1:
            return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        return IMAGENET_MEAN, IMAGENET_STD
    if norm == "auto":
        return channel_stats(sample())
    if len(norm.mean) != channels:
        raise DataError(
            f"data.normalize: {len(norm.mean)} mean/std value(s) given for {channels}-channel images"
        )
    return tuple(norm.mean), tuple(norm.std)


def build_splits(cfg: DataConfig, seed: int, spec: InputSpec | None = None) -> Splits:
    """Resolve a data config into train/val/test datasets.

    With `spec` (from a checkpoint) images are prepared exactly as it says; without, the
    input spec is derived from the config (and `normalize: auto` measured on train).
    """
    if cfg.source == "synthetic":
        return _synthetic(cfg, seed, spec)
    if cfg.source == "image_folder":
        return _image_folder(cfg, seed, spec)
    if cfg.source == "csv":
        parts, classes = csv_source.load(cfg)
        return _in_memory(cfg, seed, spec, parts, classes)
    if cfg.source == "torchvision":
        return _torchvision(cfg, seed, spec)
    raise DataError(f"data.source '{cfg.source}' is not available in this version of cnnctl")


def _carve(
    cfg: DataConfig, labels: Sequence[int], seed: int, need_val: bool, need_test: bool
) -> tuple[list[int], list[int], list[int]]:
    fractions = [cfg.val_fraction if need_val else 0.0, (cfg.test_fraction or 0.0) if need_test else 0.0]
    rest, val, test = stratified_split(labels, fractions, seed)
    if need_val and not val:
        raise DataError(
            "no validation data: set data.val_fraction > 0 (or add a val/ folder for image_folder)"
        )
    return rest, val, test


def _synthetic(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    size = spec.size if spec else input_size(cfg)
    channels = spec.channels if spec else (cfg.channels or 3)
    images, labels, classes = synthetic.generate(
        cfg.num_classes, cfg.samples_per_class, max(size), seed, cfg.noise
    )
    tensor = torch.stack([pil_to_uint8(fit_size(to_mode(img, channels), size, None)) for img in images])
    full = ArrayDataset(tensor, torch.tensor(labels, dtype=torch.long))
    train_idx, val_idx, test_idx = _carve(cfg, labels, seed, True, cfg.test_fraction is not None)
    if spec is None:
        mean, std = _norm_stats(cfg, channels, lambda: tensor[train_idx])
        spec = InputSpec(channels, size, None, mean, std)
    augment = build_augment(cfg.augment, size)
    return Splits(
        train=full.subset(train_idx, augment),
        val=full.subset(val_idx),
        test=full.subset(test_idx) if test_idx else None,
        classes=classes,
        input=spec,
    )


def _image_folder(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    assert cfg.root is not None  # guaranteed by DataConfig
    root = Path(cfg.root)
    extensions = folder.normalise_extensions(cfg.extensions)
    dirs = folder.find_split_dirs(root) or {"train": root}
    scanned = {name: folder.scan_split(path, extensions) for name, path in dirs.items()}
    decode = spec or InputSpec(cfg.channels or 3, input_size(cfg), cfg.resize, (0.0,), (1.0,))
    mode = cache.resolve_mode(cfg.cache, sum(len(s.files) for s in scanned.values()), decode)
    workers = decode_workers(cfg)
    predecoded: dict[str, torch.Tensor] = {}
    if cfg.check_images:  # decoding to the cache's input spec on the way when there is a cache to fill
        scanned = checked_splits(scanned, decode if mode != "off" else None, workers, predecoded)
    classes = folder.resolve_classes(scanned["train"].classes_present, cfg.classes, dirs["train"])
    for name in ("val", "test"):
        if name in scanned and set(scanned[name].classes_present) != set(classes):
            raise DataError(
                f"{dirs[name]}: its classes {scanned[name].classes_present} differ from "
                f"train's {classes}; every split needs the same class folders"
            )
    labels = {name: folder.labels_for(s, classes) for name, s in scanned.items()}
    train_idx, val_idx, test_idx = _carve(
        cfg, labels["train"], seed, "val" not in dirs, "test" not in dirs and cfg.test_fraction is not None
    )
    decoded: dict[str, torch.Tensor] = {}
    if mode != "off":
        decoded = {
            n: cache.cached_images(s.files, decode, mode, workers, predecoded) for n, s in scanned.items()
        }
        predecoded.clear()
    if spec is None:
        probe = FileDataset(scanned["train"].files, labels["train"], decode)
        step = max(1, len(train_idx) // STATS_SAMPLE)
        picked = train_idx[::step][:STATS_SAMPLE]

        def sample() -> torch.Tensor:  # the same images, cached or decoded now
            if decoded:
                return decoded["train"][picked]
            return torch.stack([probe[i][0] for i in picked])

        mean, std = _norm_stats(cfg, decode.channels, sample)
        spec = InputSpec(decode.channels, decode.size, decode.resize, mean, std)

    def dataset(name: str) -> FileDataset | ArrayDataset:
        if decoded:
            return ArrayDataset(decoded[name], torch.tensor(labels[name], dtype=torch.long))
        return FileDataset(scanned[name].files, labels[name], spec)

    given = {name: dataset(name) for name in scanned}
    splits = _assemble(cfg, given, (train_idx, val_idx, test_idx), classes, spec)
    splits.files = _split_files({n: s.files for n, s in scanned.items()}, (train_idx, val_idx, test_idx))
    return splits


def _split_files(
    given: dict[str, list[str]], carved: tuple[list[int], list[int], list[int]]
) -> dict[str, list[str]]:
    """Which files each split holds: a split folder's own, or those carved from train's."""
    out: dict[str, list[str]] = {}
    for name, indices in zip(("train", "val", "test"), carved, strict=True):
        if name in given and name != "train":
            out[name] = list(given[name])
        elif indices:
            out[name] = [given["train"][i] for i in indices]
    return out


def _assemble(
    cfg: DataConfig,
    given: dict[str, Any],
    carved: tuple[list[int], list[int], list[int]],
    classes: list[str],
    spec: InputSpec,
) -> Splits:
    """Splits from the datasets a source has (`given`: train, maybe val and test) and the
    index lists carved from train for the missing ones; augmentation on train only."""
    train_idx, val_idx, test_idx = carved
    train_all = given["train"]

    def split(name: str, indices: list[int]) -> Any:
        if name in given:
            return given[name]
        return train_all.subset(indices) if indices else None

    val = split("val", val_idx)
    assert val is not None
    return Splits(
        train=train_all.subset(train_idx, build_augment(cfg.augment, spec.size)),
        val=val,
        test=split("test", test_idx),
        classes=classes,
        input=spec,
    )


def _torchvision(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    known = torchvision_source.lookup(cfg.name)
    if spec is None:
        target = (cfg.channels or known.channels, input_size(cfg), cfg.resize)
    else:
        target = (spec.channels, spec.size, spec.resize)
    parts, classes, fitted = torchvision_source.load(cfg, target)
    return _in_memory(cfg, seed, spec, parts, classes, fitted=fitted)


def _in_memory(
    cfg: DataConfig,
    seed: int,
    spec: InputSpec | None,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
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
    train_idx, val_idx, test_idx = _carve(cfg, labels.tolist(), seed, "val" not in parts, need_test)
    train_all = ArrayDataset(prepared["train"], labels)
    if spec is None:
        step = max(1, -(-len(train_idx) // STATS_IN_MEMORY))
        mean, std = _norm_stats(cfg, channels, lambda: train_all.images[train_idx[::step]])
        spec = InputSpec(channels, size, resize, mean, std)

    given = {name: ArrayDataset(prepared[name], parts[name][1]) for name in parts}
    given["train"] = train_all
    return _assemble(cfg, given, (train_idx, val_idx, test_idx), classes, spec)


RESIZE_BATCH = 4096  # images resized per interpolate call


def prepare_images(
    images: torch.Tensor, channels: int, size: tuple[int, int], resize: int | None
) -> torch.Tensor:
    """A uint8 (N, C, H, W) batch → `channels` and (H, W) `size` the way `fit_size` does one image.

    Grey ↔ RGB as PIL converts ('L' = ITU-R 601-2 luma); bilinear, antialiased resizing,
    straight to `size` or, with `resize`, shorter side to `resize` then a centre crop.
    """
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        luma = (images.to(torch.int32) * weights).sum(dim=1, keepdim=True) + 32768
        images = (luma >> 16).to(torch.uint8)
    images = _resize_batch(images, size, resize)
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return images


def _resize_batch(images: torch.Tensor, size: tuple[int, int], resize: int | None) -> torch.Tensor:
    h, w = size
    src_h, src_w = int(images.shape[2]), int(images.shape[3])
    if resize is None:
        new = (h, w)
    else:
        scale = resize / min(src_h, src_w)
        new = (max(h, round(src_h * scale)), max(w, round(src_w * scale)))
    if new == (src_h, src_w) == (h, w):
        return images
    top, left = (new[0] - h) // 2, (new[1] - w) // 2
    out = torch.empty((images.shape[0], images.shape[1], h, w), dtype=torch.uint8)
    for start in range(0, images.shape[0], RESIZE_BATCH):
        chunk = images[start : start + RESIZE_BATCH]
        if new != (src_h, src_w):
            chunk = _interpolate(chunk, new)
        out[start : start + RESIZE_BATCH] = chunk[:, :, top : top + h, left : left + w]
    return out


def _interpolate(chunk: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a uint8 batch (natively where torch can, else via float)."""
    try:
        return torch.nn.functional.interpolate(
            chunk, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    except (RuntimeError, NotImplementedError):  # pragma: no cover - torch builds without uint8 kernels
        resized = torch.nn.functional.interpolate(
            chunk.float(), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        return resized.round_().clamp_(0, 255).to(torch.uint8)


def checked_splits(
    scanned: dict[str, folder.FolderSplit],
    decode: InputSpec | None = None,
    workers: int = 0,
    decoded: dict[str, torch.Tensor] | None = None,
) -> dict[str, folder.FolderSplit]:
    """Every split without its unreadable files (fully decoded once, verdicts cached).

    The skipped files are counted and listed in one warning; a class left with no
    readable image is an error before training. With `decode`, the images decoded for the
    check are added to `decoded` (path → uint8 input) for the cache to reuse.
    """
    import logging

    from cnnctl.data.check import check_files

    every = [f for split in scanned.values() for f in split.files]
    report = check_files(every, decode=decode, workers=workers)
    if decoded is not None:
        decoded.update(report.decoded)
    if not report.bad:
        return scanned
    logging.getLogger("cnnctl").warning(report.summary())
    bad = {path for path, _ in report.bad}
    kept: dict[str, folder.FolderSplit] = {}
    for name, split in scanned.items():
        pairs = [(f, c) for f, c in zip(split.files, split.class_of_file, strict=True) if f not in bad]
        emptied = sorted(set(split.classes_present) - {c for _, c in pairs})
        if emptied:
            raise DataError(
                f"{split.root}: class folder(s) {emptied} have no readable image left; "
                "`cnnctl data check CONFIG` lists the unreadable files"
            )
        kept[name] = folder.FolderSplit(
            split.root, [f for f, _ in pairs], [c for _, c in pairs], split.classes_present
        )
    return kept


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


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------


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
    ):
        images, labels = data.images, data.labels
        if pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.shard = batch_size, shuffle, seed, shard
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self._count() // self.batch_size)

    def _count(self) -> int:
        n = len(self.labels)
        if self.shard is None:
            return n
        rank, world = self.shard
        return -(-n // world) if self.shuffle else len(range(rank, n, world))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shard is not None:  # several processes: index this rank's part of the order
            order = _epoch_order(n, self.shuffle, self.seed, self.epoch)
            mine = shard_order(order, self.shard, pad=self.shuffle)
            for start in range(0, len(mine), self.batch_size):
                index = mine[start : start + self.batch_size]
                yield self.images[index], self.labels[index]
            return
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                yield self.images[index], self.labels[index]
        else:
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
    ):
        self.generator = torch.Generator()
        self.seed = seed
        # The order is `_epoch_order`, the same as TensorBatches', so a dataset gives the same
        # batches whether it is decoded from files or sliced from memory (data.cache).
        self.sampler = _EpochSampler(len(dataset), shuffle, seed, shard)
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


def _epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(seed, epoch)))


class _EpochSampler(torch.utils.data.Sampler[int]):
    """The (seed, epoch) order; under torchrun this rank's part of it, like DistributedSampler."""

    def __init__(self, n: int, shuffle: bool, seed: int, shard: tuple[int, int] | None):
        self.n, self.shuffle, self.seed, self.shard = n, shuffle, seed, shard
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        order = _epoch_order(self.n, self.shuffle, self.seed, self.epoch)
        return iter(shard_order(order, self.shard, pad=self.shuffle).tolist())

    def __len__(self) -> int:
        if self.shard is None:
            return self.n
        rank, world = self.shard
        return -(-self.n // world) if self.shuffle else len(range(rank, self.n, world))


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


def make_loader(
    dataset: LabelledDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    workers: int,
    pin: bool,
    shard: tuple[int, int] | None = None,
) -> Batches:
    """The fastest correct loader for a dataset: tensor slicing when nothing is per-sample.

    `shard` = (rank, world) under torchrun: this process's part of every epoch.
    """
    if isinstance(dataset, ArrayDataset) and dataset.augment is None:
        return TensorBatches(dataset, batch_size, shuffle, seed, pin, shard)
    return EpochLoader(dataset, batch_size, shuffle, seed, workers, pin, shard)
