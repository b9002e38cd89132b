"""What a run's data holds: per split, the images per class and the files that cannot be used
(`cnnctl data check`, and the data section of a run's report)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cnnctl.config import RunConfig
from cnnctl.core.errors import DataError
from cnnctl.data import build_splits, decode_workers
from cnnctl.data.sources.image_folder import split_dirs


def check_data(cfg: RunConfig) -> dict[str, Any]:
    """What `cnnctl data check` reports: per split, the images per class and the unusable files.

    An image folder is scanned and every file decoded (cached verdicts reused); other
    sources are loaded as training loads them. Blocking problems raise DataError.
    Returns {"source", "splits": {name: {class: count}}, "unreadable": [...], "warnings": [...]};
    the warnings (a class with very few training images, a held-out split missing a class) are
    also logged.
    """
    result = _counts(cfg)
    result["warnings"] = distribution_warnings(result["splits"])
    for line in result["warnings"]:
        logging.getLogger("cnnctl").warning(line)
    return result


def _counts(cfg: RunConfig) -> dict[str, Any]:
    from cnnctl.data import folder
    from cnnctl.data.check import check_files

    if cfg.data.source != "image_folder":
        splits = build_splits(cfg.data, cfg.seed, separator=cfg.label_separator())
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        counts = {
            name: _class_counts(part.targets(), splits.classes)
            for name, part in parts.items()
            if part is not None
        }
        unusable = _manifest_unusable(cfg) if cfg.data.source == "manifest" else []
        return {"source": cfg.data.source, "splits": counts, "unreadable": unusable}
    assert cfg.data.root is not None
    root = Path(cfg.data.root)
    dirs = split_dirs(root, cfg.data.split_folders)
    if list(dirs) == ["train"] and dirs["train"] == root:
        dirs = {"all (split by fraction)": root}
    extensions = folder.normalise_extensions(cfg.data.extensions)
    scanned = {name: folder.scan_split(path, extensions) for name, path in dirs.items()}
    first = next(iter(scanned.values())).classes_present
    for name, split in scanned.items():
        if set(split.classes_present) != set(first):
            raise DataError(f"{dirs[name]}: its classes {split.classes_present} differ from train's {first}")
    report = check_files([f for s in scanned.values() for f in s.files], workers=decode_workers(cfg.data))
    bad = dict(report.bad)
    result: dict[str, Any] = {"source": "image_folder", "splits": {}, "unreadable": []}
    for name, split in scanned.items():
        good = [c for f, c in zip(split.files, split.class_of_file, strict=True) if f not in bad]
        result["splits"][name] = {c: good.count(c) for c in split.classes_present}
    result["unreadable"] = [{"path": p, "reason": r} for p, r in report.bad]
    result["cached"] = report.cached
    return result


def _class_counts(targets: Any, classes: list[str]) -> dict[str, int]:
    """Images per class of a targets tensor (multi-hot targets: images per label)."""
    import torch

    if targets.dim() == 2:
        per = (targets > 0.5).sum(dim=0)
    else:
        per = torch.bincount(targets.long(), minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, per.tolist(), strict=True)}


def _manifest_unusable(cfg: RunConfig) -> list[dict[str, str]]:
    """A manifest's rows that cannot be used: files not there, and images that do not decode."""
    from cnnctl.data.check import check_files
    from cnnctl.data.sources.manifest import read_tables, row_names

    tables = read_tables(cfg.data)
    out = [
        {"path": path, "reason": f"no such regular file ({table.source.name} row {row})"}
        for table in tables.values()
        for row, path in table.missing
    ]
    rows = row_names(tables)
    report = check_files([f for t in tables.values() for f in t.files], workers=decode_workers(cfg.data))
    return out + [{"path": path, "reason": f"{reason} ({rows[path]})"} for path, reason in report.bad]


FEW_IMAGES = 5  # a class with fewer training images than this is warned about


def distribution_warnings(splits: dict[str, dict[str, int]]) -> list[str]:
    """Lines about the class distribution: classes with fewer than FEW_IMAGES training images,
    and classes a val or test split has no image of (its metrics say nothing about them)."""
    train = splits.get("train") or splits.get("all (split by fraction)") or {}
    lines = [
        f"class {name!r} has only {count} training image(s): too few to learn it reliably; add "
        "images, or try train.class_weights: auto / data.sampler: balanced"
        for name, count in train.items()
        if count < FEW_IMAGES
    ]
    for split in ("val", "test"):
        missing = [name for name, count in splits.get(split, {}).items() if count == 0]
        if missing:
            lines.append(
                f"the {split} split has no image of {', '.join(map(repr, missing[:10]))}: its "
                "metrics say nothing about them"
            )
    return lines
