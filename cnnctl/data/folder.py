"""Image folders: `root/<class>/*.png`, or `root/{train,val,test}/<class>/...`.

Class names are the sub-folder names sorted as torchvision's ImageFolder sorts them
(or the order given in `data.classes`), matched by name across splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cnnctl.data.transforms import IMAGE_EXTENSIONS
from cnnctl.errors import DataError

VAL_NAMES = ("val", "valid", "validation")


@dataclass(frozen=True)
class FolderSplit:
    """The files of one split with their class names (labels are resolved later)."""

    root: Path
    files: list[str]
    class_of_file: list[str]
    classes_present: list[str]


def normalise_extensions(extensions: list[str] | None) -> tuple[str, ...]:
    if not extensions:
        return IMAGE_EXTENSIONS
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def class_folders(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders of `root`."""
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        raise DataError(f"{root}: folder not found (data.root)") from None
    except NotADirectoryError:
        raise DataError(f"{root}: not a folder (data.root)") from None


def scan_split(root: Path, extensions: tuple[str, ...]) -> FolderSplit:
    """All image files under each class folder of `root` (recursive, hidden files skipped)."""
    classes = class_folders(root)
    if not classes:
        raise DataError(f"{root}: no class sub-folders found; expected {root}/<class>/<image files>")
    files: list[str] = []
    owners: list[str] = []
    empty: list[str] = []
    for name in classes:
        found = sorted(_images_under(root / name, extensions))
        if not found:
            empty.append(name)
        files += found
        owners += [name] * len(found)
    if empty:
        raise DataError(
            f"{root}: class folder(s) with no images ({', '.join(empty)}); "
            f"add images or remove the folder (extensions read: {' '.join(extensions)})"
        )
    return FolderSplit(root, files, owners, classes)


def _images_under(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append(os.path.join(dirpath, name))
    return found


def find_split_dirs(root: Path) -> dict[str, Path] | None:
    """{'train': ..., 'val': ..., 'test': ...} when root has a train/ folder, else None."""
    if not (root / "train").is_dir():
        return None
    dirs = {"train": root / "train"}
    val = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    if val is not None:
        dirs["val"] = val
    if (root / "test").is_dir():
        dirs["test"] = root / "test"
    return dirs


def resolve_classes(train_classes: list[str], fixed: list[str] | None, where: Path) -> list[str]:
    """The label order: `data.classes` when given (must name exactly the folders), else sorted."""
    if fixed is None:
        return list(train_classes)
    if len(set(fixed)) != len(fixed):
        raise DataError("data.classes: a class name is listed twice")
    if set(fixed) != set(train_classes):
        raise DataError(
            f"data.classes does not match the folders in {where}: "
            f"missing folders {sorted(set(fixed) - set(train_classes))}, "
            f"unlisted folders {sorted(set(train_classes) - set(fixed))}"
        )
    return list(fixed)


def labels_for(split: FolderSplit, classes: list[str]) -> list[int]:
    """Map each file's class name to its index in `classes`; unknown classes are an error."""
    unknown = sorted(set(split.classes_present) - set(classes))
    if unknown:
        raise DataError(
            f"{split.root}: class folder(s) {unknown} are not among the training classes {classes}"
        )
    index = {name: i for i, name in enumerate(classes)}
    return [index[name] for name in split.class_of_file]
