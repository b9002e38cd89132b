"""One way to write a file: a temp file beside it, flushed and fsynced, then renamed over it.

A reader never sees half a file, a crash leaves the old file intact, and every failure of
the output path (disk full, read-only folder, permission denied, a name too long or with a
NUL byte, torch's zip writer failing) is one `OutputError` line naming the path and the
reason, with the temp file removed. Temp files are named `.cnnctl-tmp-<pid>-<n>-<name>`
(short, so a long target name still fits the file system's limit), which is how
`remove_stale_temps` finds the ones a killed process left behind.

No torch here: callers that write with `torch.save` pass a writer function.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from cnnctl.core.errors import OutputError

TEMP_PREFIX = ".cnnctl-tmp-"
_counter = itertools.count()


def temp_path(path: Path) -> Path:
    """Where `path`'s bytes go before the rename (same folder: a rename across file systems
    is not atomic)."""
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{next(_counter)}-{path.name[:40]}")


def describe(err: BaseException) -> str:
    """The reason part of an output error, short: 'No space left on device', 'Permission denied'."""
    if isinstance(err, OSError):
        return (err.strerror or str(err)).splitlines()[0]
    text = str(err).splitlines()[0] if str(err) else err.__class__.__name__
    if isinstance(err, ValueError) and "null" in text.lower():
        return "the name holds a NUL byte"
    if isinstance(err, RuntimeError) and "write" in text.lower():
        return f"write failed, is the disk full? ({text})"
    return text


def output_error(path: Path | str, err: BaseException, what: str = "file", hint: str = "") -> OutputError:
    """The one line for a failed write of `path`."""
    tail = f"; {hint}" if hint else ""
    return OutputError(f"{os.fsdecode(path)}: cannot write {what} ({describe(err)}){tail}")


@contextlib.contextmanager
def atomic_path(path: Path | str, what: str = "file", hint: str = "") -> Iterator[Path]:
    """Yield a temp path to write `path`'s content to; on a clean exit it is fsynced and renamed
    over `path` (and the folder fsynced); on any failure it is removed and an OSError,
    ValueError (NUL byte) or RuntimeError (torch's writer) becomes one `OutputError`."""
    path = Path(path)
    try:
        tmp = temp_path(path)
        _remove_dead_temps(path)
    except ValueError as err:
        raise output_error(path, err, what, hint) from None
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, ValueError, RuntimeError) as err:
        _discard(tmp)
        raise output_error(path, err, what, hint) from None
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_open(
    path: Path | str, mode: str = "w", what: str = "file", hint: str = "", **kwargs: Any
) -> Iterator[IO[Any]]:
    """`open()` for writing whose content appears at `path` only once the block succeeds."""
    with atomic_path(path, what, hint) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(path: Path | str, text: str, what: str = "file", hint: str = "") -> None:
    with atomic_open(path, "w", what, hint, encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)


def write_json(path: Path | str, data: Any, what: str = "JSON file", hint: str = "") -> None:
    """JSON (indented, newline-terminated); non-UTF-8 names stay as escaped surrogates, so they
    read back to the same bytes."""
    write_text(path, json.dumps(data, indent=2) + "\n", what, hint)


def write_with(
    path: Path | str, writer: Callable[[IO[bytes]], None], what: str = "file", hint: str = ""
) -> None:
    """Binary content produced by `writer(handle)` (e.g. `lambda f: torch.save(obj, f)`)."""
    with atomic_open(path, "wb", what, hint) as handle:
        writer(handle)


def remove_stale_temps(folder: Path | str) -> list[Path]:
    """Delete the temp files a killed cnnctl process left in `folder` (not this process's own);
    the caller must own the folder (hold its run lock). Returns what was removed."""
    removed: list[Path] = []
    mine = f"{TEMP_PREFIX}{os.getpid()}-"
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            name = entry.name
            if is_temp_name(name) and not name.startswith(mine):
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def _remove_dead_temps(path: Path) -> None:
    """Temp files for `path` that a killed process left (its pid is gone): removed before the
    next write of the same file."""
    suffix = f"-{path.name[:40]}"
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if not (name.startswith(TEMP_PREFIX) and name.endswith(suffix)):
                continue
            pid = name[len(TEMP_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists (another user's, say)
        return True
    return True


def is_temp_name(name: str) -> bool:
    """A cnnctl temp file's name: this module's, or the `.NAME.tmp` / `.NAME.tmp-PID` of
    cnnctl before it."""
    if name.startswith(TEMP_PREFIX):
        return True
    if not name.startswith("."):
        return False
    stem, sep, tail = name.rpartition(".tmp")
    legacy_targets = ("config.yaml", "best.pt", "last.pt", "metrics.csv", "summary.json")
    return stem[1:] in legacy_targets and (tail == "" or (tail.startswith("-") and tail[1:].isdigit()))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut (POSIX; a no-op elsewhere)."""
    if os.name == "posix":
        with contextlib.suppress(OSError):
            _fsync_file(folder)


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        tmp.unlink()


__all__ = [
    "TEMP_PREFIX",
    "atomic_open",
    "atomic_path",
    "describe",
    "fsync_dir",
    "is_temp_name",
    "output_error",
    "remove_stale_temps",
    "write_json",
    "write_text",
    "write_with",
]
