"""K-fold cross-validation splits (data.cv): scikit-learn's StratifiedKFold, or
StratifiedGroupKFold when the data has groups (data.group_column), shuffled by the run's seed.

Every fold's run computes the same K folds (the same samples, strata, groups and seed) and
keeps its own: fold k validates on the k-th part and trains on the others, so the K val parts
partition the samples exactly and a group lies in one of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from cnnctl.core.errors import ConfigError, DataError

INSTALL_HINT = "pip install 'cnnctl[cv]'"


def fold_split(
    pool: Sequence[int],
    strata: Sequence[int],
    groups: Sequence[str] | None,
    folds: int,
    fold: int,
    seed: int,
    classes: Sequence[str] | None = None,
) -> tuple[list[int], list[int]]:
    """(train, val) of fold `fold` of `folds` over the indices in `pool`; `strata[i]` (the
    class, or a multi-label sample's rarest label) and `groups[i]` belong to index i. With
    `classes` (single-label: the name of each class index) every class must reach every fold."""
    members = sorted(pool)
    labels = [strata[i] for i in members]
    _check_enough(labels, [groups[i] for i in members] if groups is not None else None, folds, classes)
    if classes is None:
        labels = _merge_rare(labels, folds)
    splitter = _splitter(groups is not None, folds, seed)
    with warnings.catch_warnings():  # a stratum rarer than K: sklearn warns, the split is still exact
        warnings.simplefilter("ignore", UserWarning)
        chosen = (
            splitter.split(members, labels, [groups[i] for i in members])
            if groups is not None
            else splitter.split(members, labels)
        )
        for k, (train_at, val_at) in enumerate(chosen):
            if k == fold:
                return sorted(members[i] for i in train_at), sorted(members[i] for i in val_at)
    raise AssertionError(f"fold {fold} of {folds} not produced")  # CvFold checks fold < folds


def _splitter(grouped: bool, folds: int, seed: int) -> Any:
    try:
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    except ImportError:
        raise ConfigError(f"data.cv (cnnctl cv) needs the 'scikit-learn' package: {INSTALL_HINT}") from None
    random_state = seed % 2**32  # numpy's seeds are 32-bit
    if grouped:
        return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=random_state)
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)


def _check_enough(
    labels: list[int], groups: list[str] | None, folds: int, classes: Sequence[str] | None
) -> None:
    """Each of K val parts needs a sample (a group) of its own, and single-label, a sample of
    every class: one line saying what is short, instead of a part left empty."""
    if groups is not None and len(set(groups)) < folds:
        raise DataError(
            f"data.cv: {folds} folds need at least {folds} groups (data.group_column); the data has "
            f"{len(set(groups))}: use fewer folds (--folds)"
        )
    if len(labels) < folds:
        raise DataError(f"data.cv: {folds} folds need at least {folds} images; there are {len(labels)}")
    if classes is None:
        return
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    short = sorted(c for c, n in counts.items() if n < folds)
    if short:
        name = classes[short[0]] if 0 <= short[0] < len(classes) else str(short[0])
        raise DataError(
            f"data.cv: {folds} folds give every fold images of every class, and class {name!r} has "
            f"{counts[short[0]]}: use fewer folds (--folds) or add images"
        )


def _merge_rare(labels: list[int], folds: int) -> list[int]:
    """Multi-label strata (rarest labels) with fewer than K samples join one stratum: they
    still spread over the folds, and no stratum is too small to stratify."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [label if counts[label] >= folds else -1 for label in labels]
