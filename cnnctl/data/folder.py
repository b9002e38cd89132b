"""Image folders: `root/<class>/*.png`, or `root/{train,val,test}/<class>/...`.

Class names are the sub-folder names sorted as torchvision's ImageFolder sorts them
(or the order given in `data.classes`), matched by name across splits. Folders are searched
by the link-safe walker (`cnnctl.data.walk`, its policy in docs/reliability.md); files are
opened only when they are regular files (`not_regular`, `open_regular`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cnnctl.core.errors import DataError
from cnnctl.data.transforms import IMAGE_EXTENSIONS, file_kind
from cnnctl.data.walk import Walk, os_reason
from cnnctl.report.console import printable

VAL_NAMES = ("val", "valid", "validation")


@dataclass(frozen=True)
class FolderSplit:
    """The files of one split with their class names (labels are resolved later)."""

    root: Path
    files: list[str]
    class_of_file: list[str]  # multi-label (`separator` set): each file's labels joined by it
    classes_present: list[str]
    separator: str | None = None  # task multi_label: what joins the labels of `class_of_file`


def names_in(label: str, separator: str | None) -> list[str]:
    """The class names one `class_of_file` entry holds: itself, or (multi-label) its labels."""
    if separator is None:
        return [label]
    return label.split(separator) if label else []


def present_names(labels: Sequence[str], separator: str | None) -> set[str]:
    """Every class name `labels` (`class_of_file` entries) hold."""
    if separator is None:
        return set(labels)
    return {name for label in labels for name in names_in(label, separator)}


def normalise_extensions(extensions: Sequence[str] | None) -> tuple[str, ...]:
    if not extensions:
        return IMAGE_EXTENSIONS
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def class_folders(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders of `root` (symlinked folders included)."""
    try:
        return sorted(e.name for e in os.scandir(root) if _is_dir(e) and not e.name.startswith("."))
    except FileNotFoundError:
        raise DataError(f"{printable(str(root))}: folder not found (data.root)") from None
    except NotADirectoryError:
        raise DataError(f"{printable(str(root))}: not a folder (data.root)") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop (ELOOP) or a name the file system cannot stat
        return False


def scan_split(root: Path, extensions: tuple[str, ...]) -> FolderSplit:
    """All image files under each class folder of `root` (recursive, hidden files skipped,
    links resolved by the walker's policy; what it skipped is one warning)."""
    classes = class_folders(root)
    if not classes:
        raise DataError(
            f"{printable(str(root))}: no class sub-folders found; expected {printable(str(root))}/<class>/<image files>"
        )
    walk = Walk(extensions)
    found = walk.run([root / name for name in classes])
    walk.warn(under=root)
    files: list[str] = []
    owners: list[str] = []
    empty: list[str] = []
    for name, under in zip(classes, found, strict=True):
        under.sort()
        if not under:
            empty.append(name)
        files += under
        owners += [name] * len(under)
    if empty:
        raise DataError(
            f"{printable(str(root))}: class folder(s) with no images ({', '.join(map(printable, empty))}); "
            f"add images or remove the folder (extensions read: {' '.join(extensions)})"
        )
    return FolderSplit(root, files, owners, classes)


def collect_images(paths: Sequence[str | Path], extensions: Sequence[str] | None = None) -> list[Path]:
    """What `predict` reads: files as given, folders searched recursively for image files
    (`extensions`, default IMAGE_EXTENSIONS; hidden entries skipped); each folder's files
    sorted, in the order of `paths`, no file twice (by device and inode).

    A named file is kept whatever it is, so that it gets its row: a FIFO, device or socket
    is then an error row ('not a regular file'), never opened. A path that does not exist
    (or a dangling symlink) is a DataError. What the folder walks skipped is one warning.
    """
    walk = Walk(normalise_extensions(extensions))
    roots: list[str | None] = []  # a folder to walk, or None for a named file
    named: list[str] = []
    for raw in paths:
        path = os.fspath(raw)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.lexists(path):
                raise DataError(
                    f"{printable(path)}: a dangling symlink (its target does not exist)"
                ) from None
            raise DataError(f"{printable(path)}: no such file or folder") from None
        except OSError as err:
            raise DataError(f"{printable(path)}: {os_reason(err)}") from None
        roots.append(path if stat.S_ISDIR(mode) else None)
        named.append(path)
    found = walk.run(roots, named)
    walk.warn()
    out: list[Path] = []
    for root, files in zip(roots, found, strict=True):
        out += [Path(f) for f in (sorted(files) if root is not None else files)]
    return out


def not_regular(path: str | Path) -> str:
    """'' when `path` (links followed) is a regular file that may be opened, else why not:
    'not a regular file (FIFO)', 'file disappeared', ... Found by stat alone: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "dangling symlink" if os.path.lexists(path) else "file disappeared"
    except OSError as err:
        return os_reason(err)
    except ValueError:  # a NUL byte in the name
        return "invalid file name"
    return "" if stat.S_ISREG(mode) else f"not a regular file ({file_kind(mode)})"


def open_regular(path: str | Path) -> IO[bytes]:
    """Open a regular file for reading, or raise OSError('not a regular file (FIFO)') without
    blocking: stat first (a device is never even opened), then opened with O_NONBLOCK (a FIFO
    would otherwise wait for a writer) and checked with fstat, so a file swapped for a FIFO
    after the stat is still refused. The handle's name is `path`, as with open()."""
    reason = not_regular(path)
    if reason:
        raise OSError(reason)

    def opener(name: str, flags: int) -> int:
        fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise OSError(f"not a regular file ({file_kind(mode)})")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    return open(path, "rb", opener=opener)


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
            f"data.classes does not match the folders in {printable(str(where))}: "
            f"missing folders {sorted(set(fixed) - set(train_classes))}, "
            f"unlisted folders {sorted(set(train_classes) - set(fixed))}"
        )
    return list(fixed)


def labels_for(split: FolderSplit, classes: list[str]) -> list[int]:
    """Map each file's class name to its index in `classes`; unknown classes are an error
    (single-label; a multi-label split's targets are `image_folder.targets_for`'s)."""
    unknown = sorted(set(split.classes_present) - set(classes))
    if unknown:
        raise DataError(
            f"{printable(str(split.root))}: class folder(s) {unknown} are not among the training classes {classes}"
        )
    index = {name: i for i, name in enumerate(classes)}
    return [index[name] for name in split.class_of_file]
