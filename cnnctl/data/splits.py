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


def strata(targets: torch.Tensor) -> list[int]:
    """What a split is stratified by, one int per sample: the class (single-label targets), or
    for multi-hot (N, labels) targets the sample's rarest label (by its count in `targets`;
    the number of labels for a sample with none), so a rare label reaches every split."""
    if targets.dim() == 1:
        return [int(v) for v in targets.tolist()]
    positive = targets > 0.5
    counts = positive.sum(dim=0).double()
    masked = torch.where(positive, counts, torch.full_like(counts, float("inf")).expand_as(positive))
    rarest = masked.argmin(dim=1)
    rarest[~positive.any(dim=1)] = targets.shape[1]
    return [int(v) for v in rarest.tolist()]


def carve(
    cfg: DataConfig,
    labels: Sequence[int],
    seed: int,
    need_val: bool,
    need_test: bool,
    groups: Sequence[str] | None = None,
    pooled: int = 0,
    classes: Sequence[str] | None = None,
) -> Carved:
    """Train's indices split into (kept for train, val, test) by data.val_fraction / test_fraction;
    a split the source already has (`need_*` false) gets no indices. With `groups` (one per
    sample) no group is split across parts (`group_split`).

    With data.cv, val is instead fold k of a K-fold split (`folds.fold_split`) of every index
    not carved for test: train's, and the `pooled` last ones of `labels`, a given val split the
    source appended (`pool_val`). Test is carved first exactly as without data.cv, so every
    fold tests on the images a plain run tests on. `classes` (single-label: each index's name)
    checks that every class reaches every fold."""
    n = len(labels) - pooled
    own = labels[:n] if pooled else labels
    own_groups = groups[:n] if groups is not None and pooled else groups
    fractions = [cfg.val_fraction if need_val else 0.0, (cfg.test_fraction or 0.0) if need_test else 0.0]
    if own_groups is not None:
        rest, val, test = group_split(own, own_groups, fractions, seed)
    else:
        rest, val, test = stratified_split(own, fractions, seed)
    if cfg.cv is not None:
        from cnnctl.data.folds import fold_split

        pool = [*rest, *val, *range(n, len(labels))]
        train, val = fold_split(pool, labels, groups, cfg.cv.folds, cfg.cv.fold, seed, classes)
        return train, val, test
    if need_val and not val:
        raise DataError(
            "no validation data: set data.val_fraction > 0 (or add a val/ folder for image_folder)"
            + ("; with data.group_column, every class needs 2 or more groups" if groups is not None else "")
        )
    return rest, val, test


def group_split(
    labels: Sequence[int], groups: Sequence[str], fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Like `stratified_split`, but whole groups: returns [rest, part for fractions[0], ...].

    Groups are taken largest first (ties in a seeded order); each goes to the part whose
    per-class shortfall it fills best without overshooting more than it fills, else it stays
    in `rest`. A group never leaves `rest` if that would take a class's last group from it. A
    part with a fraction > 0 left empty gets the smallest group that can move.
    """
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    totals: dict[int, int] = {}
    for label in labels:
        totals[label] = totals.get(label, 0) + 1
    wanted = [{c: max(1, round(n * f)) if f > 0 else 0 for c, n in totals.items()} for f in fractions]
    generator = torch.Generator().manual_seed(seed)
    names = sorted(members)
    shuffled = [names[j] for j in torch.randperm(len(names), generator=generator).tolist()]
    order = sorted(shuffled, key=lambda g: -len(members[g]))  # stable: the seeded order breaks ties
    hist = {g: _histogram(labels, members[g]) for g in order}
    left = {c: sum(1 for g in order if c in hist[g]) for c in totals}  # groups of each class in rest
    filled: list[dict[int, int]] = [{} for _ in fractions]
    placed: dict[str, int] = {}
    for group in order:
        if any(left[c] <= 1 for c in hist[group]):
            continue
        part = _best_part(hist[group], wanted, filled, fractions)
        if part is not None:
            _place(group, part, hist, filled, left, placed)
    for k, fraction in enumerate(fractions):
        if fraction > 0 and not filled[k]:
            movable = [g for g in reversed(order) if g not in placed and all(left[c] > 1 for c in hist[g])]
            if movable:
                _place(movable[0], k, hist, filled, left, placed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for group in order:
        parts[placed[group] + 1 if group in placed else 0] += members[group]
    return [sorted(p) for p in parts]


def _histogram(labels: Sequence[int], indices: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in indices:
        out[labels[i]] = out.get(labels[i], 0) + 1
    return out


def _best_part(
    counts: dict[int, int],
    wanted: list[dict[int, int]],
    filled: list[dict[int, int]],
    fractions: Sequence[float],
) -> int | None:
    """The part a group of these class counts fills best (net of overshoot), or None for rest."""
    best, best_gain = None, 0
    for k, fraction in enumerate(fractions):
        if fraction <= 0:
            continue
        short = {c: max(0, wanted[k][c] - filled[k].get(c, 0)) for c in counts}
        gain = sum(min(n, short[c]) - max(0, n - short[c]) for c, n in counts.items())
        if gain > best_gain:
            best, best_gain = k, gain
    return best


def _place(
    group: str,
    part: int,
    hist: dict[str, dict[int, int]],
    filled: list[dict[int, int]],
    left: dict[int, int],
    placed: dict[str, int],
) -> None:
    placed[group] = part
    for c, n in hist[group].items():
        filled[part][c] = filled[part].get(c, 0) + n
        left[c] -= 1


def assemble(
    cfg: DataConfig,
    given: dict[str, Any],
    carved: Carved,
    classes: list[str],
    spec: InputSpec,
    pooled: int = 0,
) -> Splits:
    """Splits from the datasets a source has (`given`: train, maybe val and test) and the
    index lists carved from train for the missing ones; augmentation on train only. The
    `pooled` last samples of train are a val split the source appended (data.cv)."""
    train_idx, val_idx, test_idx = carved
    train_all = given["train"]

    def split(name: str, indices: list[int]) -> Any:
        if name in given:
            return given[name]
        return train_all.subset(indices) if indices else None

    val = split("val", val_idx)
    assert val is not None
    splits = Splits(
        train=train_all.subset(train_idx, build_augment(cfg.augment, spec.size)),
        val=val,
        test=split("test", test_idx),
        classes=classes,
        input=spec,
    )
    splits.ids = row_ids({name: len(part) for name, part in given.items()}, carved, pooled)
    return splits


def row_ids(sizes: dict[str, int], carved: Carved, pooled: int = 0) -> dict[str, list[str]]:
    """Each split's "<source split>:<row>" names (`Splits.ids` of data held in memory): a
    given split's own rows, or the train rows carved for it (the `pooled` last of train being
    the given val's)."""
    own = sizes["train"] - pooled

    def name(i: int) -> str:
        return f"train:{i}" if i < own else f"val:{i - own}"

    out: dict[str, list[str]] = {}
    for split, indices in zip(SPLIT_NAMES, carved, strict=True):
        if split in sizes and split != "train":
            out[split] = [f"{split}:{i}" for i in range(sizes[split])]
        elif indices or split == "train":
            out[split] = [name(i) for i in indices]
    return out


def members(
    scanned: dict[str, Any], carved: Carved, groups: dict[str, str] | None
) -> list[tuple[str, str, str, str]]:
    """(path, class, split, group) of every file of a file-based source: what splits.csv holds.
    `scanned` maps split → an object with `files` and `class_of_file` (train's carved by `carved`)."""
    names = (
        dict.fromkeys(carved[0], "train") | dict.fromkeys(carved[1], "val") | dict.fromkeys(carved[2], "test")
    )
    out: list[tuple[str, str, str, str]] = []
    for split, part in scanned.items():
        for i, (path, label) in enumerate(zip(part.files, part.class_of_file, strict=True)):
            role = names[i] if split == "train" else split
            out.append((path, label, role, groups.get(path, "") if groups is not None else ""))
    return out


def split_files(given: dict[str, list[str]], carved: Carved) -> dict[str, list[str]]:
    """Which files each split holds: a split folder's own, or those carved from train's."""
    out: dict[str, list[str]] = {}
    for name, indices in zip(SPLIT_NAMES, carved, strict=True):
        if name in given and name != "train":
            out[name] = list(given[name])
        elif indices:
            out[name] = [given["train"][i] for i in indices]
    return out
