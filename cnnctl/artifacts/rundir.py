"""Run directories: `runs/<name>/`, made by cnnctl, written by one process, never silently replaced.

- A run dir carries a marker, `.cnnctl-run` (JSON: run id, when, cnnctl version), written
  when cnnctl creates it. `--force` replaces only a folder with that marker, and only when
  every entry in it is one cnnctl writes (RUN_FILES, plots/, tensorboard/, exports with their
  sidecars, temp files): a user's folder, or a run holding a user's file, is one line instead.
- One writer: a run holds an exclusive lock, `<parent>/.cnnctl-locks/<name>.lock` (fcntl/msvcrt through
  `filelock`), from before its folder is chosen until the process ends. The kernel drops it
  when the process dies, SIGKILL included, so a lock left by a killed run never blocks
  `--resume`; a second writer gets one line.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnctl.core.errors import ConfigError, OutputError

MARKER = ".cnnctl-run"
RUN_FILES = (
    "config.yaml",
    "best.pt",
    "last.pt",
    "metrics.csv",
    "summary.json",
    "splits.csv",
    MARKER,
)
RUN_FOLDERS = ("plots", "tensorboard")
LOCKS = ".cnnctl-locks"  # in the runs folder: one lock file per run name, kept (a lock file is never deleted)


@dataclass
class RunLock:
    """The exclusive lock of one run name in one runs folder; `release()` when done."""

    path: Path
    handle: Any

    def release(self) -> None:
        self.handle.release()


def lock_run(parent: Path, name: str) -> RunLock:
    """Take `name`'s lock in `parent` now, or raise one line: another process writes that run."""
    from filelock import FileLock, Timeout

    path = parent / LOCKS / f"{name}.lock"
    handle = FileLock(path, timeout=0, is_singleton=False)
    try:
        path.parent.mkdir(exist_ok=True)
        handle.acquire()
    except Timeout:
        raise ConfigError(
            f"{parent / name}: another cnnctl process is writing this run right now; wait for it, "
            "or pick another --name"
        ) from None
    except (OSError, ValueError) as err:
        from cnnctl.core.atomic import describe

        raise OutputError(f"{path}: cannot take the run's lock ({describe(err)})") from None
    return RunLock(path, handle)


def check_name(name: str) -> str:
    """A run name is one folder name: not empty, no path separators, no '.', '..' or NUL."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name or (os.sep != "/" and os.sep in name):
        raise ConfigError(
            f"output.name / --name {name!r}: must be a plain folder name (no '/' or NUL byte, not '.' or '..'); "
            "set output.dir for where runs go"
        )
    return name


def run_id(run_dir: Path) -> str | None:
    """The id in `run_dir`'s marker, or None for a folder cnnctl did not make (or an old run)."""
    try:
        data = json.loads((run_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("run_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def create_run_dir(parent: str | Path, name: str, force: bool = False) -> tuple[Path, str, RunLock]:
    """Make a fresh run directory `name`, else `name-2`, `name-3`, ...; `force` replaces `name`
    (a cnnctl run only). Returns the folder, its new run id and its lock (held: release it when
    the run ends)."""
    parent = Path(parent)
    check_name(name)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        from cnnctl.core.atomic import describe

        raise OutputError(f"{parent}: cannot create the runs folder ({describe(err)})") from None
    suffix = 1
    while True:
        target = parent / (name if suffix == 1 else f"{name}-{suffix}")
        suffix += 1
        if not force and _taken(target):
            continue
        lock = lock_run(parent, target.name) if force else _try_lock(parent, target.name)
        if lock is None:
            continue
        try:
            if force:
                replace_run(target)
            made = _make(target)
        except BaseException:
            lock.release()
            raise
        if made is None:  # another process made it first, between our look and mkdir
            lock.release()
            if force:
                raise ConfigError(f"{target}: another process created this folder just now; try again")
            continue
        return target, made, lock


def _taken(target: Path) -> bool:
    return target.exists() or target.is_symlink()


def _try_lock(parent: Path, name: str) -> RunLock | None:
    try:
        return lock_run(parent, name)
    except ConfigError:
        return None


def _make(target: Path) -> str | None:
    """mkdir + marker; None if the folder exists already."""
    try:
        target.mkdir()
    except FileExistsError:
        return None
    except (OSError, ValueError) as err:
        from cnnctl.core.atomic import describe

        raise OutputError(f"{target}: cannot create the run folder ({describe(err)})") from None
    ident = uuid.uuid4().hex
    from cnnctl import __version__
    from cnnctl.core.atomic import write_json

    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    write_json(target / MARKER, {"run_id": ident, "created": stamp, "cnnctl": __version__}, "run marker")
    return ident


def replace_run(target: Path) -> None:
    """`--force`: delete the run at `target`, if there is one, after checking every entry in it
    is cnnctl's; anything else there stops it (nothing is deleted then)."""
    if target.is_symlink():
        raise ConfigError(
            f"{target}: is a symbolic link; refusing to replace it (remove the link or pick another --name)"
        )
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder; refusing to replace it")
    if not (target / MARKER).is_file():
        raise ConfigError(
            f"{target}: exists and was not made by cnnctl (no {MARKER} marker); refusing to replace it: "
            "pick another --name, or move it away yourself"
        )
    foreign = foreign_entries(target)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(
            f"{target}: holds files cnnctl did not write ({shown}); refusing to replace it: move them "
            "out, or pick another --name"
        )
    try:
        shutil.rmtree(target)
    except OSError as err:
        from cnnctl.core.atomic import describe

        raise OutputError(f"{target}: cannot remove the old run ({describe(err)})") from None


def foreign_entries(run_dir: Path) -> list[str]:
    """Names in `run_dir` that are not cnnctl's own files (sorted)."""
    from cnnctl.core.atomic import is_temp_name

    names = sorted(os.listdir(run_dir))
    present = set(names)
    out = []
    for name in names:
        path = run_dir / name
        if path.is_symlink():
            out.append(name)
        elif (name in RUN_FILES or is_temp_name(name)) and path.is_file():
            continue
        elif name in RUN_FOLDERS and path.is_dir():
            out += [f"{name}/{inner}" for inner in _foreign_in_folder(path, name)]
        elif not (
            is_export(path)
            or (name.endswith(".json") and name[:-5] in present and is_export(path.with_suffix("")))
        ):
            out.append(name)
    return out


def _foreign_in_folder(folder: Path, kind: str) -> list[str]:
    out = []
    for inner in sorted(os.listdir(folder)):
        path = folder / inner
        ours = (
            not path.is_symlink()
            and path.is_file()
            and (inner.endswith(".png") if kind == "plots" else inner.startswith("events.out.tfevents."))
        )
        if not ours:
            out.append(inner)
    return out


def is_run_file(path: Path) -> bool:
    """Is `path` (existing or not) one of a cnnctl run's own files: a run file name, an export or
    its sidecar inside a marked run dir, or a lock file?"""
    parent = path.parent
    if parent.name == LOCKS:
        return True
    if not (parent / MARKER).is_file():
        return False
    if path.name in RUN_FILES or path.name in RUN_FOLDERS:
        return True
    return path.exists() and path.name not in foreign_entries(parent)


def is_export(path: Path) -> bool:
    """Is `path` a model file `cnnctl export` wrote (its sidecar FILE.json names cnnctl)?"""
    sidecar = path.with_name(path.name + ".json")
    if not path.is_file() or not sidecar.is_file():
        return False
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == "cnnctl-export"


def list_runs(parent: str | Path) -> list[dict[str, object]]:
    """One record per run directory under `parent` (newest first), read from summary.json."""
    parent = Path(parent)
    if not parent.is_dir():
        raise ConfigError(f"{parent}: no runs folder here")
    records: list[dict[str, object]] = []
    for run in sorted(p for p in parent.iterdir() if p.is_dir()):
        summary_file = run / "summary.json"
        if not summary_file.is_file():
            if (run / "config.yaml").is_file():
                records.append({"name": run.name, "status": "incomplete", "path": str(run)})
            continue
        try:
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            records.append({"name": run.name, "status": "unreadable summary", "path": str(run)})
            continue
        test = summary.get("test") or {}
        stamp = datetime.datetime.fromtimestamp(summary_file.stat().st_mtime)
        records.append(
            {
                "name": run.name,
                "status": "done",
                "model": summary.get("model"),
                "dataset": summary.get("dataset"),
                "epochs": summary.get("epochs_run"),
                "best_epoch": summary.get("best_epoch"),
                "best_val_loss": summary.get("best_val_loss"),
                "test_acc": test.get("accuracy"),
                "date": stamp.isoformat(timespec="seconds"),
                "path": str(run),
            }
        )
    records.sort(key=lambda r: str(r.get("date", "")), reverse=True)
    return records
