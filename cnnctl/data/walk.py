"""The link-safe folder walk: one search over several folders, with one link policy.

Every folder cnnctl searches (training's class folders, `data check`, `evaluate --data`,
`predict`) is read by `Walk` (docs/reliability.md):
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

from cnnctl.data.transforms import file_kind
from cnnctl.report.console import printable

SKIPS_SHOWN = 8  # entries named in a "skipped" warning (by path); the others are counted
NAME_SHOWN = 80  # characters of one skipped entry's name in that warning

FileId = tuple[int, int]  # (st_dev, st_ino)


def os_reason(err: OSError) -> str:
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
                links.append(_Link(i, path, real_ancestors(os.path.dirname(path) or ".")))
                continue
            try:
                info = os.stat(path)
            except OSError as err:
                self.skipped.append((path, os_reason(err)))
                continue
            ident = (info.st_dev, info.st_ino)
            if ident in self.dirs:
                if os.path.normpath(self.dirs[ident]) != os.path.normpath(path):
                    self.skipped.append((path, f"same folder as {self.dirs[ident]}"))
                continue
            self.dirs[ident] = path
            self._read(i, path, real_ancestors(path), found, links)
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
                self.skipped.append((folder, f"cannot read folder: {os_reason(err)}"))
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
                    self.skipped.append((entry.path, os_reason(err)))
            stack += reversed(subfolders)  # depth first, in name order

    def _follow(self, link: _Link, found: list[list[str]], links: list[_Link]) -> None:
        try:
            info = os.stat(link.path)
        except FileNotFoundError:
            self.skipped.append((link.path, "dangling symlink"))
            return
        except OSError as err:
            self.skipped.append((link.path, os_reason(err)))
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


def real_ancestors(folder: str) -> frozenset[FileId]:
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
