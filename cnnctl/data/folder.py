"""Image folders: `root/<class>/*.png`, or `root/{train,val,test}/<class>/...`.

Class names are the sub-folder names sorted as torchvision's ImageFolder sorts them
(or the order given in `data.classes`), matched by name across splits.

One walker reads every folder cnnctl searches (training's class folders, `data check`,
`evaluate --data`, `predict`), with one link policy (docs/reliability.md):
- real entries first: every folder is read without following links, then the symlinks
  found are resolved, so a file or folder that is also reachable through a link is
  counted where it really is;
- a symlinked folder is followed once; one that leads back to a folder above it (a loop:
  `ln -s . data/circle/self`) or to a folder already read is skipped;
- a file is counted once by (st_dev, st_ino): two links or two hard links to one file are
  one image;
- a FIFO, device or socket is never opened (a FIFO opened for reading blocks forever);
- hidden entries (names starting with '.') are skipped silently; everything else that is
  skipped is named in one warning on the `cnnctl` logger.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cnnctl.core.errors import DataError
from cnnctl.data.transforms import IMAGE_EXTENSIONS, file_kind
from cnnctl.report.console import printable

VAL_NAMES = ("val", "valid", "validation")
SKIPS_SHOWN = 8  # entries named in a "skipped" warning (by path); the others are counted
NAME_SHOWN = 80  # characters of one skipped entry's name in that warning

FileId = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True)
class FolderSplit:
    """The files of one split with their class names (labels are resolved later)."""

    root: Path
    files: list[str]
    class_of_file: list[str]
    classes_present: list[str]


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
            raise DataError(f"{printable(path)}: {_reason(err)}") from None
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
        return _reason(err)
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


def _reason(err: OSError) -> str:
    """An OSError as a short reason: 'symlink loop', 'Permission denied', ..."""
    if err.errno == errno.ELOOP:
        return "symlink loop"
    return err.strerror or str(err)


@dataclass
class _Link:
    root: int  # which walked root it was found under
    path: str  # as reached (through the links above it)
    ancestors: frozenset[FileId]  # the real folders above it (its loop guard)


@dataclass
class Walk:
    """One search over several folders, with shared sets of the folders and files seen.

    `run(roots)` returns, for each root, the image files found under it (unsorted). Roots
    are read without following links first; the symlinks found are resolved after all
    roots (in order), so a real location always wins over a link to it, in any root.
    """

    extensions: tuple[str, ...]
    dirs: dict[FileId, str] = field(default_factory=dict)  # folder id → the path it was read as
    files: dict[FileId, str] = field(default_factory=dict)  # file id → the path it is counted as
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def run(self, roots: Sequence[str | Path | None], named: Sequence[str] | None = None) -> list[list[str]]:
        """Files under each root; a None root stands for the named file `named[i]`, which is
        kept as given (once) whatever it is."""
        found: list[list[str]] = [[] for _ in roots]
        links: list[_Link] = []
        for i, root in enumerate(roots):
            if root is None:
                assert named is not None
                self._named(named[i], found[i])
                continue
            path = os.fspath(root)
            if os.path.islink(path):  # a linked root is a link like any other: after the real ones
                links.append(_Link(i, path, _real_ancestors(os.path.dirname(path) or ".")))
                continue
            try:
                info = os.stat(path)
            except OSError as err:
                self.skipped.append((path, _reason(err)))
                continue
            ident = (info.st_dev, info.st_ino)
            if ident in self.dirs:
                if os.path.normpath(self.dirs[ident]) != os.path.normpath(path):
                    self.skipped.append((path, f"same folder as {self.dirs[ident]}"))
                continue
            self.dirs[ident] = path
            self._read(i, path, _real_ancestors(path), found, links)
        while links:  # links found while following links join the end of the queue
            self._follow(links.pop(0), found, links)
        return found

    def _named(self, path: str, out: list[str]) -> None:
        info = os.stat(path)
        ident = (info.st_dev, info.st_ino)
        if ident in self.files:
            if os.path.normpath(self.files[ident]) != os.path.normpath(path):
                self.skipped.append((path, f"same file as {self.files[ident]}"))
            return
        self.files[ident] = path
        out.append(path)

    def _read(
        self, root: int, top: str, ancestors: frozenset[FileId], found: list[list[str]], links: list[_Link]
    ) -> None:
        """Every real entry under `top` (a folder already marked as seen), depth first."""
        stack = [(top, ancestors)]
        while stack:
            folder, above = stack.pop()
            try:
                with os.scandir(folder) as scan:
                    entries = sorted(scan, key=lambda e: e.name)
            except OSError as err:
                self.skipped.append((folder, f"cannot read folder: {_reason(err)}"))
                continue
            subfolders: list[tuple[str, frozenset[FileId]]] = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_symlink():
                        links.append(_Link(root, entry.path, above))
                    elif entry.is_dir(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        ident = (info.st_dev, info.st_ino)
                        if ident in self.dirs:  # a bind mount of a folder already read
                            self.skipped.append((entry.path, f"same folder as {self.dirs[ident]}"))
                            continue
                        self.dirs[ident] = entry.path
                        subfolders.append((entry.path, above | {ident}))
                    elif entry.is_file(follow_symlinks=False):
                        if entry.name.lower().endswith(self.extensions):
                            self._count(entry.path, entry.stat(follow_symlinks=False), found[root])
                    else:
                        kind = file_kind(entry.stat(follow_symlinks=False).st_mode)
                        self.skipped.append((entry.path, f"not a regular file: {kind}"))
                except OSError as err:
                    self.skipped.append((entry.path, _reason(err)))
            stack += reversed(subfolders)  # depth first, in name order

    def _follow(self, link: _Link, found: list[list[str]], links: list[_Link]) -> None:
        try:
            info = os.stat(link.path)
        except FileNotFoundError:
            self.skipped.append((link.path, "dangling symlink"))
            return
        except OSError as err:
            self.skipped.append((link.path, _reason(err)))
            return
        ident = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode):
            if ident in link.ancestors:
                self.skipped.append((link.path, "symlink loop"))
            elif ident in self.dirs:
                self.skipped.append((link.path, f"same folder as {self.dirs[ident]}"))
            else:
                self.dirs[ident] = link.path
                self._read(link.root, link.path, link.ancestors | {ident}, found, links)
        elif stat.S_ISREG(info.st_mode):
            if os.path.basename(link.path).lower().endswith(self.extensions):
                self._count(link.path, info, found[link.root])
        else:
            self.skipped.append((link.path, f"not a regular file: {file_kind(info.st_mode)}"))

    def _count(self, path: str, info: os.stat_result, out: list[str]) -> None:
        ident = (info.st_dev, info.st_ino)
        if ident in self.files:
            if os.path.normpath(self.files[ident]) != os.path.normpath(path):  # not just named twice
                self.skipped.append((path, f"same file as {self.files[ident]}"))
            return
        self.files[ident] = path
        out.append(path)

    def message(self, under: Path | None = None) -> str:
        """'skipped 2 entries under data: circle/self (symlink loop), ...' ('' if none)."""
        if not self.skipped:
            return ""
        base = os.fspath(under) if under is not None else None

        def shown(path: str) -> str:
            name = os.path.relpath(path, base) if base is not None else path
            text = printable(name)
            return text if len(text) <= NAME_SHOWN else text[: NAME_SHOWN - 1] + "…"

        def reason(text: str) -> str:
            for prefix in ("same file as ", "same folder as "):
                if text.startswith(prefix):
                    return prefix + shown(text[len(prefix) :])
            return printable(text)

        first = sorted(self.skipped)[:SKIPS_SHOWN]
        listed = ", ".join(f"{shown(p)} ({reason(r)})" for p, r in first)
        more = len(self.skipped) - SKIPS_SHOWN
        where = f" under {printable(base)}" if base is not None else ""
        count = len(self.skipped)
        return f"skipped {count} {'entry' if count == 1 else 'entries'}{where}: {listed}" + (
            f", and {more} more" if more > 0 else ""
        )

    def warn(self, under: Path | None = None) -> None:
        text = self.message(under)
        if text:
            logging.getLogger("cnnctl").warning(text)


def _real_ancestors(folder: str) -> frozenset[FileId]:
    """The ids of the real folder `folder` and of every folder above it (up to /): a link
    under `folder` to any of them is a loop."""
    ids: set[FileId] = set()
    current = os.path.realpath(folder)
    while True:
        try:
            info = os.stat(current)
            ids.add((info.st_dev, info.st_ino))
        except OSError:
            pass
        parent = os.path.dirname(current)
        if parent == current:
            return frozenset(ids)
        current = parent


def _images_under(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """The image files under one folder, by the walker's policy (sorted)."""
    walk = Walk(extensions)
    found = walk.run([folder])[0]
    walk.warn(under=folder)
    return sorted(found)


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
    """Map each file's class name to its index in `classes`; unknown classes are an error."""
    unknown = sorted(set(split.classes_present) - set(classes))
    if unknown:
        raise DataError(
            f"{printable(str(split.root))}: class folder(s) {unknown} are not among the training classes {classes}"
        )
    index = {name: i for i, name in enumerate(classes)}
    return [index[name] for name in split.class_of_file]
