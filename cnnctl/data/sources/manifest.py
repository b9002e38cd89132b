"""The `manifest` source: data.train (and data.val / data.test) tables of image paths and labels
(`cnnctl.data.manifest` reads them), then everything an image folder gets: the image check,
the decoded-image cache, transforms, and val / test carved from train (whole groups with
data.group_column)."""

from __future__ import annotations

from pathlib import Path

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data.datasets import Splits
from cnnctl.data.folder import FolderSplit, present_names
from cnnctl.data.manifest import Manifest, read_manifest
from cnnctl.data.sources.image_folder import from_scan
from cnnctl.data.transforms import InputSpec
from cnnctl.report.console import printable


def build(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    """Each manifest as a split of files with their labels; the rest as for image folders."""
    return _build(cfg, seed, spec, None)


def build_multi_label(cfg: DataConfig, seed: int, spec: InputSpec | None) -> Splits:
    """As `build`, each row's label a set of labels (task multi_label): multi-hot targets."""
    return _build(cfg, seed, spec, cfg.label_separator)


def _build(cfg: DataConfig, seed: int, spec: InputSpec | None, separator: str | None) -> Splits:
    tables = read_tables(cfg, separator)
    groups = _groups(cfg, tables)
    scanned = {name: _as_split(table, separator) for name, table in tables.items()}
    return from_scan(
        cfg,
        seed,
        spec,
        scanned,
        lambda checked: _classes(cfg, checked),
        groups,
        "label(s)",
        row_names(tables),
    )


def row_names(tables: dict[str, Manifest]) -> dict[str, str]:
    """file → "<manifest file name> row <n>", how messages name an image of a manifest."""
    return {
        f: f"{t.source.name} row {n}" for t in tables.values() for f, n in zip(t.files, t.rows, strict=True)
    }


def read_tables(cfg: DataConfig, separator: str | None = None) -> dict[str, Manifest]:
    """data.train / val / test read (with data.root checked when it is set); with `separator`,
    each label a set of labels (task multi_label)."""
    root = Path(cfg.root) if cfg.root else None
    if root is not None and not root.is_dir():
        raise DataError(f"{printable(str(root))}: not a folder (data.root)")
    assert cfg.train is not None and isinstance(cfg.label_column, str)  # guaranteed by DataConfig
    named = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    tables = {
        split: read_manifest(Path(path), cfg.path_column, cfg.label_column, cfg.group_column, root, separator)
        for split, path in named.items()
        if path is not None
    }
    _no_image_twice(tables)
    return tables


def _no_image_twice(tables: dict[str, Manifest]) -> None:
    """An image in two manifests would be trained on and validated (or tested) on: refused."""
    where: dict[str, tuple[str, int]] = {}
    for split, table in tables.items():
        for identity, row in zip(table.identities, table.rows, strict=True):
            if identity in where:
                other, other_row = where[identity]
                raise DataError(
                    f"{printable(str(table.source))}: row {row} names the image of the {other} "
                    f"manifest's row {other_row} ({printable(identity)}); an image belongs to one split"
                )
            where[identity] = (split, row)


def _as_split(table: Manifest, separator: str | None) -> FolderSplit:
    if not table.files:
        raise DataError(f"{printable(str(table.source))}: none of its rows names an image that is there")
    present = sorted(present_names(table.labels, separator))
    return FolderSplit(table.source, table.files, table.labels, present, separator)


def _classes(cfg: DataConfig, scanned: dict[str, FolderSplit]) -> list[str]:
    """The label order: data.classes (which must name every label), else train's labels sorted;
    val and test may lack a class, but not bring one train has not."""
    train = scanned["train"]
    classes = sorted(train.classes_present) if cfg.classes is None else list(cfg.classes)
    if len(set(classes)) != len(classes):
        raise DataError("data.classes: a class name is listed twice")
    if len(classes) < 2:
        raise DataError(f"{printable(str(train.root))}: needs at least 2 labels, found {classes}")
    for name, split in scanned.items():
        unknown = sorted(set(split.classes_present) - set(classes))
        if unknown:
            what = "data.classes" if cfg.classes is not None else "train's labels"
            raise DataError(
                f"{printable(str(split.root))}: label(s) {unknown[:10]} are not among {what} "
                f"{classes[:20]}; fix the rows or list every label in data.classes"
            )
        if name == "train" and cfg.classes is not None and set(classes) - set(split.classes_present):
            raise DataError(
                f"{printable(str(split.root))}: data.classes names {sorted(set(classes) - set(split.classes_present))} "
                "but no training row has that label"
            )
    return classes


def _groups(cfg: DataConfig, tables: dict[str, Manifest]) -> dict[str, str] | None:
    """file → group with data.group_column; a group in two given manifests is refused."""
    if cfg.group_column is None:
        return None
    seen: dict[str, str] = {}
    for split, table in tables.items():
        for group in set(table.groups):
            if group in seen and seen[group] != split:
                raise DataError(
                    f"{printable(str(table.source))}: group {printable(group)!r} is also in the "
                    f"{seen[group]} manifest; a group belongs to one split"
                )
            seen[group] = split
    return {f: g for table in tables.values() for f, g in zip(table.files, table.groups, strict=True)}
