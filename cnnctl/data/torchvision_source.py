"""The `torchvision` data source: a dataset of `torchvision.datasets` read into memory.

`data.name` picks the dataset class, `data.root` is the folder torchvision reads (or, with
`data.download: true`, downloads into). The official train split is the train data (val
carved from it by `data.val_fraction`), the official test split the test data.

Datasets that keep all images in one array (MNIST family, CIFAR, SVHN, STL10, USPS) are
taken from it in one step; the others are decoded image by image, once, and fitted to the
model's input size as they are read. Missing files, a failed download or unreadable
files are a `DataError` of one line that says where torchvision looked and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError

Part = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W) images, long (N,) labels
Target = tuple[int, tuple[int, int], int | None]  # channels, (H, W), resize: the model's input

_TRAIN_FLAG = ({"train": True}, {"train": False})
_SPLIT = ({"split": "train"}, {"split": "test"})


@dataclass(frozen=True)
class Known:
    """A supported dataset: its native image shape and how torchvision finds its splits."""

    channels: int
    size: int  # native side (the default input size; nominal where images vary)
    folder: str  # where torchvision reads the files, under data.root
    splits: tuple[dict[str, Any], dict[str, Any]] = _TRAIN_FLAG  # constructor args: train, test
    varied: bool = False  # images of different sizes: decoded one by one
    note: str = field(default="", compare=False)


KNOWN: Mapping[str, Known] = {
    "MNIST": Known(1, 28, "MNIST/raw"),
    "FashionMNIST": Known(1, 28, "FashionMNIST/raw"),
    "KMNIST": Known(1, 28, "KMNIST/raw"),
    "QMNIST": Known(1, 28, "QMNIST/raw"),
    "EMNIST": Known(
        1,
        28,
        "EMNIST/raw",
        ({"split": "balanced", "train": True}, {"split": "balanced", "train": False}),
        note="the balanced split (47 classes)",
    ),
    "USPS": Known(1, 16, "."),
    "CIFAR10": Known(3, 32, "cifar-10-batches-py"),
    "CIFAR100": Known(3, 32, "cifar-100-python"),
    "SVHN": Known(3, 32, ".", _SPLIT, note="needs scipy"),
    "STL10": Known(3, 96, "stl10_binary", _SPLIT),
    "GTSRB": Known(3, 32, "gtsrb", _SPLIT, varied=True),
    "DTD": Known(3, 64, "dtd", _SPLIT, varied=True),
    "OxfordIIITPet": Known(3, 64, "oxford-iiit-pet", ({"split": "trainval"}, {"split": "test"}), varied=True),
    "Flowers102": Known(3, 64, "flowers-102", _SPLIT, varied=True, note="needs scipy"),
}


def supported() -> str:
    return ", ".join(f"{name} ({k.note})" if k.note else name for name, k in KNOWN.items())


def lookup(name: str | None) -> Known:
    """The entry for data.name; an unknown name is an error listing the supported ones."""
    if name is not None and name in KNOWN:
        return KNOWN[name]
    close = [k for k in KNOWN if name and k.lower() == name.lower()]
    hint = f"did you mean {close[0]}? " if close else ""
    raise DataError(f"data.name: unknown torchvision dataset '{name}'; {hint}supported: {supported()}")


def load(cfg: DataConfig, target: Target) -> tuple[dict[str, Part], list[str], bool]:
    """The official train and test splits as uint8 images + labels, and the class names.

    The third value says whether the images are already fitted to `target` (datasets whose
    images vary in size); otherwise they are at their native shape.
    """
    assert cfg.root is not None and cfg.name is not None  # guaranteed by DataConfig
    known = lookup(cfg.name)
    parts: dict[str, Part] = {}
    classes: list[str] = []
    fitted = False
    for split, kwargs in zip(("train", "test"), known.splits, strict=True):
        dataset = open_dataset(cfg.name, known, Path(cfg.root), kwargs, cfg.download)
        part = None if known.varied else from_arrays(dataset)
        if part is None:
            part, fitted = read_each(dataset, target, f"{cfg.name} {split}"), True
        parts[split] = part
        if split == "train":
            classes = class_names(dataset, part[1])
    if _top(parts["test"][1]) >= len(classes):
        raise DataError(f"data.name {cfg.name}: test labels go beyond the {len(classes)} train classes")
    return parts, classes, fitted


def open_dataset(name: str, known: Known, root: Path, kwargs: dict[str, Any], download: bool) -> Any:
    """Instantiate the torchvision dataset; every failure becomes one actionable line."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, name, None)
    if cls is None:
        raise DataError(f"data.name {name}: this torchvision has no such dataset; supported: {supported()}")
    folder = root / known.folder if known.folder != "." else root
    try:
        return cls(str(root), download=download, **kwargs)
    except ImportError as err:
        package = err.name or "a package"
        raise DataError(
            f"data.name {name}: torchvision needs {package} to read it; pip install {package}"
        ) from None
    except Exception as err:  # noqa: BLE001 - torchvision raises many kinds; each becomes one line
        raise _failure(name, cls, root, folder, download, err) from None


def _failure(name: str, cls: Any, root: Path, folder: Path, download: bool, err: Exception) -> DataError:
    reason = " ".join(str(err).split()) or type(err).__name__
    if len(reason) > 300:
        reason = reason[:297] + "..."
    if download:
        url = _url(cls)
        source = f" from {url}" if url and url not in reason else ""
        return DataError(
            f"data.download: downloading {name}{source} into {root} failed ({reason}); "
            f"without internet, put the {name} files in {folder} by hand and set data.download: false"
        )
    if not folder.is_dir() or not any(folder.iterdir()):
        return DataError(
            f"data.root {root}: no {name} files found (torchvision looked in {folder}); "
            "set data.download: true, or put the files there"
        )
    if "not found" in reason.lower():
        return DataError(
            f"data.root {root}: the {name} files in {folder} are incomplete or fail torchvision's "
            f"checksum check ({reason}); set data.download: true, or put the original files there"
        )
    return DataError(
        f"data.root {root}: cannot read the {name} files in {folder} ({reason}); "
        "replace them, or delete them and set data.download: true"
    )


def _url(cls: Any) -> str | None:
    """Where torchvision downloads the dataset from, where the class says so simply."""
    url = getattr(cls, "url", None)
    if isinstance(url, str):
        return url
    mirrors = getattr(cls, "mirrors", None)
    if isinstance(mirrors, list) and mirrors and isinstance(mirrors[0], str):
        return mirrors[0]
    return None


def from_arrays(dataset: Any) -> Part | None:
    """Images and labels straight from the dataset's arrays, or None when it has none usable."""
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if data is None or targets is None:
        return None
    images = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.asarray(data))
    if images.dtype != torch.uint8:
        return None
    if images.ndim == 3:  # (N, H, W) grey
        images = images.unsqueeze(1)
    elif images.ndim == 4 and images.shape[1] not in (1, 3) and images.shape[3] in (1, 3):
        images = images.permute(0, 3, 1, 2)  # (N, H, W, C) → (N, C, H, W)
    elif images.ndim != 4 or images.shape[1] not in (1, 3):
        return None
    labels = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if labels.ndim == 2:  # QMNIST: (class, writer, ...) per image
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
        return None
    return images.contiguous(), labels.long()


def read_each(dataset: Any, target: Target, what: str) -> Part:
    """Decode every (PIL image, label) of the dataset once, fitted to the model's input."""
    from PIL import Image

    from cnnctl.data.transforms import fit_size, pil_to_uint8, to_mode

    channels, size, resize = target
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for i in range(len(dataset)):
        image, label = dataset[i]
        if not isinstance(image, Image.Image):
            raise DataError(f"data.name {what}: item {i} is a {type(image).__name__}, not an image")
        images.append(pil_to_uint8(fit_size(to_mode(image, channels), size, resize)))
        labels.append(int(label))
    if not images:
        raise DataError(f"data.name {what}: the split is empty")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def class_names(dataset: Any, labels: torch.Tensor) -> list[str]:
    """The dataset's own class names when it has them for every label, else "0", "1", ..."""
    count = _top(labels) + 1
    names = getattr(dataset, "classes", None)
    if isinstance(names, list | tuple) and len(names) >= count and all(isinstance(n, str) for n in names):
        return list(names)
    return [str(i) for i in range(count)]


def _top(labels: torch.Tensor) -> int:
    return int(labels.max()) if len(labels) else -1
