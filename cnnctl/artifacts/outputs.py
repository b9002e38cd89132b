"""Before a command writes a file: is it allowed to?

One rule for every file a command writes where the user pointed it (`--out`, `--json`,
`--plot`, plots folders): it is never one of the command's own inputs, never a cnnctl
checkpoint or run file (not even with `--force`), never a folder or a non-regular file, and
an existing file is replaced only with `--force`. The write itself then goes through
`cnnctl.core.atomic`, so a refused or failed write leaves what was there untouched.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path

from cnnctl.artifacts.rundir import MARKER, is_run_file
from cnnctl.core.errors import ConfigError

CHECKPOINT_MARK = b"cnnctl-checkpoint"


def claim_output(
    path: Path, *, force: bool = False, inputs: Iterable[Path | str] = (), option: str = "--out"
) -> Path:
    """`path` if the command may write it; else a ConfigError line saying why and what to do."""
    shown = f"{option} {os.fsdecode(path)}"
    if "\x00" in os.fsdecode(path):
        raise ConfigError(f"{option}: the file name holds a NUL byte")
    if _is_run_file(path):
        raise ConfigError(f"{shown}: is a file of a cnnctl run; write somewhere else")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as err:
        raise ConfigError(f"{shown}: cannot look at it ({err.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{shown}: is a folder; give a file name")
    if any(_same(path, source) for source in inputs):
        raise ConfigError(f"{shown}: is this command's own input; write somewhere else")
    if stat.S_ISREG(info.st_mode) and is_checkpoint(path):
        raise ConfigError(f"{shown}: is a cnnctl checkpoint; write somewhere else")
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{shown}: exists and is not a regular file; write somewhere else")
    if not force:
        raise ConfigError(f"{shown}: exists; add --force to replace it, or write somewhere else")
    return path


def is_checkpoint(path: Path) -> bool:
    """Is `path` a cnnctl checkpoint (a torch zip whose pickle names the cnnctl format)?

    Reads only the small pickle member, never the tensors."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith("data.pkl"):
                    return CHECKPOINT_MARK in archive.read(member)[: 1 << 20]
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return False


def _is_run_file(path: Path) -> bool:
    return is_run_file(path)


def _same(path: Path, other: Path | str) -> bool:
    try:
        return os.path.samefile(path, other)
    except (OSError, ValueError):
        return False


def claim_plots(folder: Path, names: Iterable[str], force: bool) -> None:
    """The plot files a command draws into `folder`: free in a run's own plots/ folder (they
    are cnnctl's), elsewhere claimed like any output."""
    if (folder.parent / MARKER).is_file() and folder.name == "plots":
        return
    for name in names:
        claim_output(folder / name, force=force, option="--plots")
