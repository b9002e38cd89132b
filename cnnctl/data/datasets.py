"""The datasets every source resolves to, and `Splits`, the bundle a data config becomes.

Every dataset yields `(uint8 image tensor (C, H, W), target)`: an int class index, or for
task multi_label a (labels,) multi-hot float tensor. Targets are held as one tensor, (N,)
long or (N, labels) float (`targets()`). In-memory sources hold all images as one uint8
tensor (`ArrayDataset`); image folders and manifests decode files on demand (`FileDataset`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch.utils.data import Dataset

from cnnctl.core.errors import DataError
from cnnctl.data.transforms import InputSpec, load_for_model

Augment = Callable[[torch.Tensor], torch.Tensor]
Target = int | torch.Tensor  # a class index, or a multi-hot row (task multi_label)


def _target(labels: torch.Tensor, i: int) -> Target:
    return int(labels[i]) if labels.dim() == 1 else labels[i]


class ArrayDataset(Dataset[tuple[torch.Tensor, Target]]):
    """Images held in memory as one uint8 (N, C, H, W) tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: Augment | None = None):
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        image = self.images[i]
        return (self.augment(image) if self.augment else image), _target(self.labels, i)

    def subset(self, indices: Sequence[int], augment: Augment | None = None) -> ArrayDataset:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return ArrayDataset(self.images[index], self.labels[index], augment)

    def targets(self) -> torch.Tensor:
        return self.labels


class FileDataset(Dataset[tuple[torch.Tensor, Target]]):
    """Image files decoded on demand to the input spec."""

    def __init__(
        self,
        files: Sequence[str],
        labels: Sequence[int] | torch.Tensor,
        spec: InputSpec,
        augment: Augment | None = None,
    ):
        self.files, self.spec, self.augment = list(files), spec, augment
        self.labels = (
            labels if isinstance(labels, torch.Tensor) else torch.tensor(list(labels), dtype=torch.long)
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        try:
            image = load_for_model(self.files[i], self.spec)
        except Exception as err:  # noqa: BLE001 - any decoder failure names the file
            raise DataError(f"{self.files[i]}: cannot read image ({err})") from None
        return (self.augment(image) if self.augment else image), _target(self.labels, i)

    def subset(self, indices: Sequence[int], augment: Augment | None = None) -> FileDataset:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return FileDataset([self.files[i] for i in indices], self.labels[index], self.spec, augment)

    def targets(self) -> torch.Tensor:
        return self.labels


class LabelledDataset(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]: ...
    def targets(self) -> torch.Tensor: ...


@dataclass
class Splits:
    """What a data config resolves to."""

    train: LabelledDataset
    val: LabelledDataset
    test: LabelledDataset | None
    classes: list[str]
    input: InputSpec
    files: dict[str, list[str]] = field(default_factory=dict)  # file-based sources: split → its files
    # file-based sources: (path, class, split, group or "") of every file, for splits.csv
    members: list[tuple[str, str, str, str]] = field(default_factory=list)
    # split → what names each of its samples, in order: a file's path, or for data held in
    # memory "<the source's split>:<row>" (`cnnctl cv`'s out-of-fold rows)
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        """True when the targets are multi-hot (task multi_label)."""
        return self.train.targets().dim() == 2

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, ArrayDataset)
