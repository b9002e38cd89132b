"""How a source's datasets become train / val / test: the helpers every source builder shares.

A source brings `train` and the held-out splits it has (a val/ folder, a data.val file); the
missing ones are carved from train, stratified per class and fixed by the seed
(`carve`), then `assemble` puts them together with augmentation on train only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data.datasets import Splits
from cnnctl.data.transforms import InputSpec, build_augment

Carved = tuple[list[int], list[int], list[int]]  # train's indices kept for train, carved for val, test
SPLIT_NAMES = ("train", "val", "test")


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


def carve(cfg: DataConfig, labels: Sequence[int], seed: int, need_val: bool, need_test: bool) -> Carved:
    """Train's indices split into (kept for train, val, test) by data.val_fraction / test_fraction;
    a split the source already has (`need_*` false) gets no indices."""
    fractions = [cfg.val_fraction if need_val else 0.0, (cfg.test_fraction or 0.0) if need_test else 0.0]
    rest, val, test = stratified_split(labels, fractions, seed)
    if need_val and not val:
        raise DataError(
            "no validation data: set data.val_fraction > 0 (or add a val/ folder for image_folder)"
        )
    return rest, val, test


def assemble(
    cfg: DataConfig, given: dict[str, Any], carved: Carved, classes: list[str], spec: InputSpec
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


def split_files(given: dict[str, list[str]], carved: Carved) -> dict[str, list[str]]:
    """Which files each split holds: a split folder's own, or those carved from train's."""
    out: dict[str, list[str]] = {}
    for name, indices in zip(SPLIT_NAMES, carved, strict=True):
        if name in given and name != "train":
            out[name] = list(given[name])
        elif indices:
            out[name] = [given["train"][i] for i in indices]
    return out
